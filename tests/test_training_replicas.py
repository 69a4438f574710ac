"""The project's run_fn as replicas over 127.0.0.1 (trainer/local_replicas.py,
MultiWorkerMirroredStrategy): what is kept is the chief's alone, and a
replica killed part-way fails the training at once, which a retry resumes.

The kill is a real SIGKILL, sent by the replica to itself right after Keras'
BackupAndRestore has saved an epoch, as an OOM kill or a lost node would.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from imgcls.trainer import local_replicas
from imgcls.trainer.config import TrainingConfig
from tests import training_data

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 4
REPLICAS = 2

# One replica: run_fn on the arguments; with a kill epoch, the replica of
# the index given kills itself once that epoch is backed up.
_REPLICA = textwrap.dedent('''
    import json, sys
    from tests import interrupt

    interrupt.kill_after_backup(int(sys.argv[1]), replica=int(sys.argv[2]),
                                signum=int(sys.argv[3]))
    from tests import training_data
    from imgcls.trainer import task
    task.run_fn(training_data.fn_args(*json.loads(sys.argv[4])))
''')


@pytest.fixture(scope='module')
def examples(tmp_path_factory):
  uri = str(tmp_path_factory.mktemp('examples'))
  # 41 and 40: replicas' shares of different sizes.
  training_data.write_examples(uri, {'train': {'a': 21, 'b': 20},
                                     'test': {'a': 4, 'b': 4}})
  return uri


def _train(tmp_path, examples, execution, kill_after=0, kill_index=0,
           signum=signal.SIGKILL):
  """Runs run_fn as REPLICAS replicas; (their lines, the error or None)."""
  config = TrainingConfig(
      model_type='LenetModel', epochs=EPOCHS, batch_size=8,
      early_stopping_patience=EPOCHS,
      backup_root=str(tmp_path / 'backup')).to_custom_config()
  scratch = tmp_path / 'tmp'
  scratch.mkdir(exist_ok=True)
  lines = []
  command = [sys.executable, '-c', _REPLICA, str(kill_after),
             str(kill_index), str(int(signum)),
             json.dumps([examples, str(tmp_path / execution), config])]
  try:
    local_replicas.run(command, REPLICAS, cwd=_REPO,
                       env=dict(os.environ, TMPDIR=str(scratch)),
                       output=lines.append)
  except local_replicas.ReplicaFailed as e:
    return lines, e
  return lines, None


def _started(lines, index):
  return [int(line.rsplit(' ', 1)[1]) for line in lines
          if line.startswith(f'[replica {index}] started epoch ')]


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, names in os.walk(root) for f in names)


@pytest.mark.slow
def test_replicas_keep_the_chiefs_export_history_and_logs_alone(
    tmp_path, examples):
  lines, error = _train(tmp_path, examples, 'execution')
  assert error is None, '\n'.join(lines)
  for index in range(REPLICAS):
    assert _started(lines, index) == [1, 2, 3, 4]
  out = tmp_path / 'execution'
  assert (out / 'serving_model' / 'saved_model.pb').exists()
  with open(out / 'model_run' / 'history.json') as f:
    assert len(json.load(f)['loss']) == EPOCHS
  # TensorBoard's logs, the chief's only: no replica's temporary folder.
  assert {os.path.dirname(f) for f in _files(out / 'model_run')} == {
      '', 'train', 'validation'}
  assert not (tmp_path / 'backup').exists()  # removed once trained
  # The other replica's saves went to temporary folders, deleted.
  assert os.listdir(tmp_path / 'tmp') == []


@pytest.mark.slow
@pytest.mark.parametrize('kill_index', [0, 1], ids=['chief', 'worker'])
def test_a_killed_replica_fails_the_training_and_a_retry_resumes(
    tmp_path, examples, kill_index):
  lines, error = _train(tmp_path, examples, 'execution-1', kill_after=2,
                        kill_index=kill_index)
  assert error is not None, '\n'.join(lines)
  assert (f'replica {kill_index} of {REPLICAS} was killed by SIGKILL'
          in str(error))
  assert 'started epoch 2' in str(error)  # its last lines
  # Nothing exported: no model for the Evaluator or a Pusher to take.
  assert not (tmp_path / 'execution-1' / 'serving_model').exists()

  # The retry is a new execution: new outputs, same inputs and settings.
  lines, error = _train(tmp_path, examples, 'execution-2')
  assert error is None, '\n'.join(lines)
  for index in range(REPLICAS):
    assert _started(lines, index) == [3, 4]
  with open(tmp_path / 'execution-2' / 'model_run' / 'history.json') as f:
    assert len(json.load(f)['loss']) == EPOCHS
  assert (tmp_path / 'execution-2' / 'serving_model' / 'saved_model.pb'
          ).exists()


@pytest.mark.slow
def test_a_hung_replica_does_not_hang_the_others(tmp_path, examples):
  """A replica stopped (SIGSTOP), alive but silent: the others' collective
  ops fail once TensorFlow's coordination service misses its heartbeats,
  and the training fails with their lines instead of waiting forever."""
  lines, error = _train(tmp_path, examples, 'execution', kill_after=2,
                        kill_index=1, signum=signal.SIGSTOP)
  assert error is not None, '\n'.join(lines)
  assert 'replica 0 of 2 exited with status 1' in str(error)
  assert 'unhealthy' in str(error)
  assert not (tmp_path / 'execution' / 'serving_model').exists()


def test_the_trainer_modules_run_no_tensorflow_op_on_import():
  """MultiWorkerMirroredStrategy configures collective ops when it is made,
  which TensorFlow refuses once any op has run in the process."""
  code = textwrap.dedent('''
      from tfx.components.trainer import executor
      from imgcls import cli
      from imgcls.trainer import executor, standalone, task
      from tensorflow.python.eager import context
      print(context.context()._context_handle is None)
  ''')
  done = subprocess.run([sys.executable, '-c', code], cwd=_REPO, text=True,
                        capture_output=True, timeout=300, check=True)
  assert done.stdout.strip() == 'True', done.stderr
