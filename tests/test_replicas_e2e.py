"""`imgcls run --workers 2` and `imgcls train --workers 2`: the Trainer as two
replica processes on this machine (trainer/executor.py,
trainer/local_replicas.py), each running TFX's own Trainer executor and the
project's run_fn, as a user runs the commands, in processes of their own.

Two workers split every batch, so they take the same steps at the same
learning rate as one: on the same data their accuracy is one worker's,
within TOLERANCE (the runs differ in their random start, shuffle and
augmentation alone). A replica killed part-way fails the run with its lines
and pushes nothing; the run again resumes from the backup and pushes.
"""
import os
import re
import subprocess
import sys

import pytest

from imgcls.pipeline import results
from tests import images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Absolute test accuracy: how far two workers may land from one.
TOLERANCE = 0.05
EPOCHS = 4
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  """The sample data (scikit-learn's digits), as `imgcls sample-data`
  writes it."""
  root = tmp_path_factory.mktemp('replicas')
  done = _imgcls(root, None, 'sample-data', '--out', root / 'data')
  assert done.returncode == 0, done.stderr
  return root


def _imgcls(root, site, *args):
  env = {**os.environ, 'TMPDIR': str(_tmp(root))}
  if site:
    env['PYTHONPATH'] = os.pathsep.join([str(site), _REPO])
  return subprocess.run([sys.executable, '-m', 'imgcls.cli', *map(str, args)],
                        capture_output=True, text=True, timeout=1200,
                        check=False, cwd=_REPO, env=env)


def _tmp(root):
  tmp = root / 'tmp'
  tmp.mkdir(exist_ok=True)
  return tmp


def _run(root, name, workers, site=None):
  return _imgcls(root, site, 'run', '--data-root', root / 'data',
                 '--serving-dir', root / name / 'serving', '--pipeline-root',
                 root / name / 'pipeline', '--model-type', 'LenetModel',
                 '--epochs', EPOCHS, '--early-stopping-patience', EPOCHS,
                 '--min-accuracy', '0.5', '--workers', workers)


def _log(root, name):
  with open(root / name / 'pipeline' / 'imgcls.log') as f:
    return f.read()


def _killing_site(root, kill_after: int, replica: int):
  """A sitecustomize that, in the replicas alone (they have a TF_CONFIG),
  prints the epochs started and kills replica `replica` once epoch
  `kill_after` is backed up (tests/interrupt.py)."""
  site = root / f'site-{kill_after}'
  site.mkdir(exist_ok=True)
  (site / 'sitecustomize.py').write_text(
      'import os\n'
      "if os.environ.get('TF_CONFIG'):\n"
      '  from tests import interrupt\n'
      f'  interrupt.kill_after_backup({kill_after}, replica={replica})\n')
  return site


def _started(log, replica):
  return [int(n) for n in re.findall(
      rf'^\[replica {replica}\] started epoch (\d+)$', log, re.MULTILINE)]


def test_two_workers_push_one_version_as_accurate_as_one_worker(digits):
  one = _run(digits, 'one', 1)
  two = _run(digits, 'two', 2)
  assert one.returncode == 0, one.stderr
  assert two.returncode == 0, two.stderr
  log = _log(digits, 'two')
  for replica in (0, 1):
    assert f'training as replica {replica} of 2' in log
  accuracy = {}
  for name in ('one', 'two'):
    result = results.load_run(str(digits / name / 'pipeline'))
    assert result.pushed_version == '1'
    assert os.listdir(digits / name / 'serving' / 'LenetModel') == ['1']
    accuracy[name] = result.accuracy
  assert abs(accuracy['two'] - accuracy['one']) <= TOLERANCE, accuracy


def test_a_killed_replica_fails_the_run_and_the_run_again_resumes(digits):
  killed = _run(digits, 'fault', 2, _killing_site(digits, 2, replica=1))
  assert killed.returncode != 0
  assert 'replica 1 of 2 was killed by SIGKILL' in killed.stderr + _log(
      digits, 'fault')
  assert not (digits / 'fault' / 'serving').exists() or not os.listdir(
      digits / 'fault' / 'serving')
  os.rename(digits / 'fault' / 'pipeline' / 'imgcls.log',
            digits / 'fault' / 'killed.log')

  again = _run(digits, 'fault', 2, _killing_site(digits, 0, replica=1))
  assert again.returncode == 0, again.stderr
  log = _log(digits, 'fault')
  assert _started(log, 0) == _started(log, 1) == [3, 4]
  assert results.load_run(
      str(digits / 'fault' / 'pipeline')).pushed_version == '1'


def test_imgcls_train_with_two_workers_publishes_one_version(tmp_path):
  images.write_class_folders(str(tmp_path / 'train'), {'a': 21, 'b': 20})
  images.write_class_folders(str(tmp_path / 'test'), {'a': 4, 'b': 4},
                             seed=1)
  done = _imgcls(tmp_path, None, 'train', '--train-dir', tmp_path / 'train',
                 '--test-dir', tmp_path / 'test', '--model-dir',
                 tmp_path / 'models', '--model-type', 'LenetModel',
                 '--epochs', '2', '--batch-size', '8', '--workers', '2')
  assert done.returncode == 0, done.stderr
  version = tmp_path / 'models' / 'LenetModel' / '1'
  assert done.stdout == f'saved model: {version}\n'
  assert sorted(os.listdir(version.parent)) == ['1', 'checkpoints']
  assert (version / 'saved_model.pb').exists()
