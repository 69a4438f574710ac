"""A Trainer killed part-way resumes from its last finished epoch when the
same training is run again: the TFX run_fn, and `imgcls train`.

The kill is a real SIGKILL of the training process, sent right after Keras'
BackupAndRestore has saved epoch 2 of 4: nothing gets to clean up, as with an
OOM kill or a preempted node.
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from imgcls.trainer.config import TrainingConfig
from tests import images, training_data

EPOCHS = 4
KILLED_AFTER = 2
CLASSES = {'a': 16, 'b': 16}

# Runs one training in a fresh process; with a kill epoch, BackupAndRestore
# kills the process as soon as it has saved that epoch.
_RUNNER = textwrap.dedent('''
    import json, sys
    from tests import interrupt

    kill_after, mode = int(sys.argv[1]), sys.argv[2]
    args = json.loads(sys.argv[3])
    interrupt.kill_after_backup(kill_after)
    if mode == 'run_fn':
      from tests import training_data
      from imgcls.trainer import task
      task.run_fn(training_data.fn_args(*args))
    else:
      from imgcls import cli
      sys.exit(cli.main(args))
''')


def _train(tmp_path, mode, args, kill_after=0):
  """(return code, the numbers of the epochs the training started)."""
  process = subprocess.run(
      [sys.executable, '-c', _RUNNER, str(kill_after), mode, json.dumps(args)],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      capture_output=True, text=True, timeout=600)
  started = [int(n) for n in re.findall(r'^started epoch (\d+)$',
                                        process.stdout, re.MULTILINE)]
  return process.returncode, started, process.stdout + process.stderr


def _config(backup_root: str) -> dict:
  # Patience above the epochs: every epoch is trained.
  return TrainingConfig(epochs=EPOCHS, batch_size=8,
                        early_stopping_patience=EPOCHS,
                        backup_root=backup_root).to_custom_config()


@pytest.mark.slow
def test_killed_trainer_retried_trains_only_the_remaining_epochs(tmp_path):
  examples = str(tmp_path / 'examples')
  training_data.write_examples(examples, {'train': CLASSES,
                                          'test': {'a': 4, 'b': 4}})
  backup_root = str(tmp_path / 'pipeline' / 'trainer-backup')
  config = _config(backup_root)

  code, started, log = _train(
      tmp_path, 'run_fn', [examples, str(tmp_path / 'execution-1'), config],
      kill_after=KILLED_AFTER)
  assert code == -9, log
  assert started == [1, 2]
  assert len(os.listdir(backup_root)) == 1  # the backup survived the kill

  # The retry is a new execution: new output directories, same inputs.
  retry_dir = tmp_path / 'execution-2'
  code, started, log = _train(tmp_path, 'run_fn',
                              [examples, str(retry_dir), config])
  assert code == 0, log
  assert started == [3, 4]
  with open(retry_dir / 'model_run' / 'history.json') as f:
    history = json.load(f)
  assert len(history['loss']) == EPOCHS  # epochs 1-2 from before the kill
  assert (retry_dir / 'serving_model' / 'saved_model.pb').exists()
  assert not os.path.exists(backup_root)  # removed once training finished


@pytest.mark.slow
def test_killed_imgcls_train_run_again_resumes(tmp_path):
  images.write_class_folders(str(tmp_path / 'train'), CLASSES)
  images.write_class_folders(str(tmp_path / 'test'), {'a': 4, 'b': 4},
                             seed=1)
  args = ['train', '--train-dir', str(tmp_path / 'train'), '--test-dir',
          str(tmp_path / 'test'), '--model-dir', str(tmp_path / 'models'),
          '--epochs', str(EPOCHS), '--batch-size', '8',
          '--early-stopping-patience', str(EPOCHS)]
  code, started, log = _train(tmp_path, 'cli', args, kill_after=KILLED_AFTER)
  assert code == -9, log
  assert started == [1, 2]
  code, started, log = _train(tmp_path, 'cli', args)
  assert code == 0, log
  assert started == [3, 4]
  base = tmp_path / 'models' / 'LenetModel'
  assert sorted(os.listdir(base)) == ['1', 'checkpoints']


@pytest.mark.parametrize('changed', ['epochs', 'data'])
def test_a_different_training_does_not_resume_another_ones_backup(
    tmp_path, changed):
  """The backup is keyed by the inputs and settings: a kept backup of
  other settings or data is not restored into a model it does not fit."""
  from imgcls.trainer import task
  config = _config(str(tmp_path / 'backup'))
  args = training_data.fn_args('/examples/1', str(tmp_path / 'out'), config)
  other = dict(config, epochs=EPOCHS + 1) if changed == 'epochs' else config
  other_args = training_data.fn_args(
      '/examples/2' if changed == 'data' else '/examples/1',
      str(tmp_path / 'out2'), other)
  first = task.backup_dir(args, TrainingConfig.from_custom_config(config))
  assert first == task.backup_dir(
      training_data.fn_args('/examples/1', str(tmp_path / 'out3'), config),
      TrainingConfig.from_custom_config(config))
  assert first != task.backup_dir(other_args,
                                  TrainingConfig.from_custom_config(other))
