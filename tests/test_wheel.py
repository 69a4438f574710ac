"""The distribution: one top-level import name, and every step runs from it.

A wheel built from the repository is installed into a fresh virtual
environment and run with no checkout on the path: `imgcls --help`, `imgcls
sample-data`, `imgcls run` on those images (the whole pipeline, the Trainer's
run_fn by its installed name) and `imgcls compile`.

Installing TensorFlow and TFX again, offline, is impractical, so the venv sees
the project environment's installed dependencies through one .pth line naming
its site-packages (what --system-site-packages would do, had the environment
not been a venv itself). A directory named in a .pth file has its own .pth
files left unread, so the checkout's editable install stays out; the test
checks where `imgcls` is imported from all the same.
"""
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*command, cwd, env=None, timeout=900):
  done = subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout, check=False)
  assert done.returncode == 0, (command, done.stdout[-3000:],
                                done.stderr[-3000:])
  return done


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  out = tmp_path_factory.mktemp('wheel')
  _run(sys.executable, '-m', 'pip', 'wheel', '--no-deps',
       '--no-build-isolation', '-w', str(out), _REPO, cwd=str(out))
  (name,) = [n for n in os.listdir(out) if n.endswith('.whl')]
  return str(out / name)


@pytest.fixture(scope='module')
def venv(wheel, tmp_path_factory):
  """(bin directory, environment) of a fresh venv holding only the wheel."""
  root = tmp_path_factory.mktemp('venv')
  _run(sys.executable, '-m', 'venv', str(root), cwd=str(root))
  bin_dir = str(root / 'bin')
  purelib = _run(os.path.join(bin_dir, 'python'), '-c',
                 'import sysconfig; print(sysconfig.get_paths()["purelib"])',
                 cwd=str(root)).stdout.strip()
  with open(os.path.join(purelib, 'project_environment.pth'), 'w') as f:
    f.write(sysconfig.get_paths()['purelib'] + '\n')
  # --ignore-installed: the environment's metadata of the editable install
  # (imgcls 0.1.0) is visible through the .pth line, and must not count.
  _run(os.path.join(bin_dir, 'python'), '-m', 'pip', 'install', '--no-deps',
       '--no-index', '--ignore-installed', wheel, cwd=str(root))
  env = {k: v for k, v in os.environ.items()
         if k not in ('PYTHONPATH', 'IMGCLS_PARAMS_FILE')}
  env['PATH'] = bin_dir + os.pathsep + env.get('PATH', '')
  return bin_dir, env


def test_imgcls_is_the_only_top_level_package(wheel):
  with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    (top_level,) = [n for n in names if n.endswith('top_level.txt')]
    assert archive.read(top_level).decode().split() == ['imgcls']
  tops = {n.split('/')[0] for n in names if '.dist-info/' not in n}
  assert tops == {'imgcls'}
  for part in ('pipeline', 'components', 'trainer', 'params'):
    assert any(n.startswith(f'imgcls/{part}/') for n in names), part
  assert 'imgcls/params/params.env' in names
  # The unit tests beside the code import tests/, which is not shipped.
  assert not [n for n in names if n.endswith('_test.py')]


def test_the_installed_package_runs_every_step(venv, tmp_path):
  bin_dir, env = venv
  imgcls = os.path.join(bin_dir, 'imgcls')
  where = _run(os.path.join(bin_dir, 'python'), '-c',
               'import imgcls, imgcls.trainer.task as t; '
               'print(imgcls.__file__); print(t.__file__)',
               cwd=str(tmp_path), env=env).stdout.split()
  for path in where:
    assert path.startswith(os.path.dirname(bin_dir)), where
    assert not path.startswith(_REPO), where
  assert 'usage: imgcls' in _run(imgcls, '--help', cwd=str(tmp_path),
                                 env=env).stdout
  # The params file is read where a command needs it, not on import.
  assert 'usage: imgcls' in _run(
      imgcls, '--help', cwd=str(tmp_path),
      env={**env, 'IMGCLS_PARAMS_FILE': '/nonexistent'}).stdout
  data, serving = str(tmp_path / 'data'), str(tmp_path / 'serving')
  _run(imgcls, 'sample-data', '--out', data, '--limit', '300',
       cwd=str(tmp_path), env=env)
  run = _run(imgcls, 'run', '--data-root', data, '--serving-dir', serving,
             '--epochs', '1', '--min-accuracy', '0', '--accept-anomalies',
             cwd=str(tmp_path), env=env)
  assert 'pushed version 1' in run.stdout, run.stdout
  assert os.path.exists(os.path.join(serving, 'LenetModel', '1',
                                     'saved_model.pb'))
  package = str(tmp_path / 'pipeline.yaml')
  _run(imgcls, 'compile', '--output', package, cwd=str(tmp_path), env=env)
  with open(package, encoding='utf-8') as f:
    spec = f.read()
  assert 'imgcls.trainer.task.run_fn' in spec
  assert 'imgcls.pipeline.kubeflow_entrypoint' in spec
  assert 'imgcls.components.versioned_pusher.Executor' in spec
