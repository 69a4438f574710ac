"""The pipeline image: built from the Dockerfile, run as Kubernetes runs it.

scripts/build-image builds the CPU variant with buildah (layers cached, so a
rerun redoes only what changed); each test then runs commands in a container
of it with `buildah run --isolation chroot`, the way containers.md says works
where no OCI runtime can start one (no Docker daemon, no podman run). What a
pod would mount is bound at the same paths: the data and serving volumes at
their mount paths (kubernetes/params/params.env), the launcher's staging
path /minio/<bucket>. Root and buildah are needed: without either the tests
skip, saying which.
"""
import functools
import json
import os
import pathlib
import re
import resource
import shutil
import subprocess
import tempfile
import time

import pytest

from imgcls.contract import deployment
from tests import test_dockerfile
from tests.test_kubeflow import (
  TASKS,
  Launcher,
  _load,
  bucket,  # noqa: F401  (a fixture)
)
from tests.test_lock import freeze_pins, lock, locked

pytestmark = [pytest.mark.e2e, pytest.mark.image]

_REPO = pathlib.Path(__file__).resolve().parents[1]
IMAGE = 'localhost/imgcls:test'
# What the logs of a run may not hold: Beam's Prism runner, which its
# DirectRunner would fetch from GitHub, or any other download at run time.
_FETCHING = re.compile(r'(?i)prism|download')
# A rare failure of buildah run before the command starts; retrying is enough.
_BUSY = 'Close_Fd sealing memfd copy: Device or resource busy'
_SAMPLE = ('--epochs', '1', '--min-accuracy', '0.1')
_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'


def _missing():
  if os.geteuid() != 0:
    return 'needs root: buildah builds and runs the image as root here'
  if not shutil.which('buildah'):
    return 'needs buildah (apt-get install buildah)'
  return None


def _limits_conf():
  """containers.conf keeping the open-files and process limits at this
  process's: buildah would raise both to 1048576, which sandboxes refuse."""
  path = (pathlib.Path(tempfile.gettempdir()) /
          f'imgcls-limits-{os.getpid()}.conf')
  values = []
  for name, limit in (('nofile', resource.RLIMIT_NOFILE),
                      ('nproc', resource.RLIMIT_NPROC)):
    soft, hard = (-1 if v == resource.RLIM_INFINITY else v
                  for v in resource.getrlimit(limit))
    values.append(f'"{name}={soft}:{hard}"')
  path.write_text(f'[containers]\ndefault_ulimits = [{", ".join(values)}]\n')
  return str(path)


@functools.lru_cache(maxsize=None)
def _env():
  return {**os.environ, 'CONTAINERS_CONF_OVERRIDE': os.environ.get(
      'CONTAINERS_CONF_OVERRIDE') or _limits_conf()}


def _buildah(*args, timeout=1800):
  for _ in range(5):
    done = subprocess.run(['buildah', *args], capture_output=True, text=True,
                          check=False, timeout=timeout, env=_env())
    if done.returncode == 0 or _BUSY not in done.stderr:
      return done
    time.sleep(1)
  return done


@pytest.fixture(scope='module')
def image():
  missing = _missing()
  if missing:
    pytest.skip(missing)
  started = time.monotonic()
  built = subprocess.run(
      [str(_REPO / 'scripts' / 'build-image'), '--cpu', '--builder',
       'buildah', '-t', IMAGE], capture_output=True, text=True, check=False)
  assert built.returncode == 0, (built.stdout[-6000:] + built.stderr[-3000:])
  print(f'image built in {time.monotonic() - started:.0f} s')
  return IMAGE


class Container:
  """A container of the image; run() is one `buildah run`, as one pod."""

  def __init__(self, image_name, volumes=None):
    done = _buildah('from', '--pull=never', image_name)
    assert done.returncode == 0, done.stderr
    self.name = done.stdout.strip().splitlines()[-1]
    self.volumes = volumes or {}
    self.logs = []

  def run(self, argv, user='1000:1000', env=None, check=True, timeout=1800):
    args = ['run', '--isolation', 'chroot', '--hostname', 'localhost',
            '--user', user]
    for host, path in self.volumes.items():
      args += ['-v', f'{host}:{path}']
    for key, value in (env or {}).items():
      args += ['--env', f'{key}={value}']
    done = _buildah(*args, self.name, '--', *argv, timeout=timeout)
    self.logs.append(done.stdout + done.stderr)
    if check:
      assert done.returncode == 0, (
          f'{argv[:4]} as {user}: exit {done.returncode}\n'
          f'{done.stdout[-3000:]}\n{done.stderr[-5000:]}')
    return done

  def remove(self):
    _buildah('rm', self.name)


@pytest.fixture
def container(image):
  made = []

  def make(volumes=None):
    made.append(Container(image, volumes))
    return made[-1]

  yield make
  for c in made:
    c.remove()


def _assert_nothing_fetched(logs):
  hits = [line for log in logs for line in log.splitlines()
          if _FETCHING.search(line)]
  assert not hits, hits[:10]


def test_no_compiler_no_test_tools_and_the_lock_installed(container):
  c = container()
  assert c.run(['sh', '-c', 'command -v gcc g++ cc c++ x86_64-linux-gnu-g++'],
               check=False).stdout == ''
  for module in ('pytest', 'kubernetes_validate'):
    assert c.run(['python', '-c', f'import {module}'],
                 check=False).returncode != 0, module
  # pip freeze in the image: the lock's runtime section, nothing else.
  frozen = c.run(['pip', 'freeze', '--all']).stdout.splitlines()
  have, want = freeze_pins(frozen), locked('runtime')
  assert {n: (have.get(n), want.get(n)) for n in set(have) | set(want)
          if have.get(n) != want.get(n)} == {}
  assert any(line.startswith('imgcls') for line in frozen)
  # The params file is where IMGCLS_PARAMS_FILE says, and read from there.
  shown = c.run(['python', '-c', 'from imgcls.contract import deployment as '
                 'd; print(d.params_file()); print(d.model_name())'])
  assert shown.stdout.split() == ['/etc/imgcls/params.env',
                                  deployment.model_name()]


def _gpu_step():
  """The Dockerfile's RUN that installs the GPU variant's CUDA wheels."""
  (step,) = [args for name, args in test_dockerfile._instructions()
             if name == 'RUN' and 'lock-section gpu' in args]
  return step


def _locked_hashes(text):
  """{name: {sha256, ...}} of a lock section."""
  hashes, name = {}, None
  for line in text.splitlines():
    match = lock._PIN.match(line)
    if match:
      name = lock.canonical(match[1])
    for digest in re.findall(r'--hash=sha256:([0-9a-f]{64})', line):
      hashes.setdefault(name, set()).add(digest)
  return hashes


def test_the_gpu_variants_install_step_resolves(container, tmp_path):
  """That step, run in the CPU image with pip's --dry-run: the wheels'
  metadata only (fast-deps: HTTP range requests), not the CUDA wheels
  themselves (about 3 GB). Its requirements go without their hashes, for
  which pip would download every wheel; the hashes are compared instead
  with those the index gives for the files pip picks."""
  step = _gpu_step()
  install = 'pip install --require-hashes -r /tmp/gpu.txt'
  assert step.count('pip install') == step.count(install) == 1
  dry = step.replace(
      install, "sed -i -e '/--hash=/d' -e 's/ *\\\\$//' /tmp/gpu.txt "
      '&& pip install --use-feature=fast-deps --dry-run --report '
      '/report/gpu.json -r /tmp/gpu.txt')
  tmp_path.chmod(0o777)
  volumes = {str(tmp_path): '/report'}
  if os.path.exists(_CA_BUNDLE):  # as scripts/build-image gives the build
    volumes[_CA_BUNDLE] = f'{_CA_BUNDLE}:ro'
  c = container(volumes)
  done = c.run(['sh', '-c', dry], user='0:0',
               env={'TENSORFLOW_EXTRA': 'and-cuda'}, timeout=900)
  report = json.loads((tmp_path / 'gpu.json').read_text())
  would = {lock.canonical(i['metadata']['name']): i['metadata']['version']
           for i in report['install']}
  section = lock.section('gpu')
  gpu = lock.pins(section)
  gpu.pop('tensorflow')  # installed already, at its pin
  assert would == gpu
  hashes = _locked_hashes(section)
  for item in report['install']:
    name = lock.canonical(item['metadata']['name'])
    picked = item['download_info']['archive_info']['hashes']['sha256']
    assert picked in hashes[name], name
  assert not re.search(r'Downloading \S+\.whl \(', done.stdout + done.stderr)


def test_two_users_run_the_sample_data_one_after_the_other(container):
  """uid 1000 (the image's user), then uid 12345 with gid 0 (OpenShift's
  arbitrary uid) in the same container, as on a shared machine: each in a
  folder of its own in the WORKDIR, both logging into the one /tmp, where
  each command's log is in a folder of its user's alone."""
  c = container()
  for user in ('1000:1000', '12345:0'):
    uid = user.split(':')[0]
    work = f'by-{uid}'
    c.run(['imgcls', 'sample-data', '--out', f'{work}/data'], user=user)
    done = c.run(['sh', '-c', f'imgcls --verbose run --data-root {work}/data '
                  f'--serving-dir {work}/serving --pipeline-root '
                  f'{work}/pipeline {" ".join(_SAMPLE)}; rc=$?; '
                  f'cat {work}/pipeline/imgcls.log; exit $rc'], user=user)
    assert done.returncode == 0
    assert c.run(['ls', f'{work}/serving/LenetModel'],
                 user=user).stdout.split() == ['1']
    assert c.run(['stat', '-c', '%u %a', f'/tmp/imgcls-{uid}',
                  f'/tmp/imgcls-{uid}/sample-data.log'],
                 user=user).stdout.split() == [uid, '700', uid, '600']
  _assert_nothing_fetched(c.logs)


def test_every_compiled_step_runs_in_the_image_as_kfp_hands_it_over(
    container, tmp_path, bucket):  # noqa: F811
  """`imgcls compile`'s spec, each step with the exact argv it gives, run
  through the launcher model of tests/test_kubeflow.py in the image."""
  data, serving, out = (tmp_path / d for d in ('data', 'serving', 'out'))
  staging = pathlib.Path('/minio') / bucket
  for d in (data, serving, out, staging):
    d.mkdir(exist_ok=True)
    d.chmod(0o777)
  mounts = {'/data': str(data), '/serving': str(serving)}
  c = container({mounts['/data']: '/data', mounts['/serving']: '/serving',
                 str(staging): str(staging), str(out): '/out'})
  c.run(['imgcls', 'sample-data', '--out', '/data'])
  c.run(['imgcls', 'compile', '--output', '/out/pipeline.yaml',
         '--image', IMAGE, '--gpus', '0', *_SAMPLE])
  spec, _ = _load(out / 'pipeline.yaml')
  # Inside the pod the volumes are at their mount paths: the launcher model
  # passes parameters unchanged.
  launcher = Launcher(spec, {'/data': '/data', '/serving': '/serving'},
                      bucket, params={'data_root': '/data'})
  for task in TASKS:
    launcher.run(task, execute=c.run)
  pushed = launcher.outputs['Pusher']['pushed_model']['metadata']
  assert pushed['pushed_destination'] == '/serving/LenetModel/1'
  assert (serving / 'LenetModel' / '1' / 'saved_model.pb').exists()
  _assert_nothing_fetched(c.logs)
