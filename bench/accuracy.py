"""5. Accuracy: LeNet on the full MNIST set by `imgcls train`, and its time.

The command is timed from start to exit; the accuracy is measured afterwards
on the 10,000 test images through the published SavedModel's serving_bytes
signature (trainer.standalone.evaluate), as a client would get it.
"""
import os
import re
import shutil

from bench import common
from bench import data
from trainer import standalone
from trainer.config import TrainingConfig

NAME = 'accuracy'
TITLE = 'Accuracy: LeNet on MNIST'
TARGET = 0.99
# Found on this 2-core machine: the defaults (batch 128, Adam 1e-3) for up
# to 20 epochs, stopping after 5 without a better validation loss; four runs
# gave 99.03% to 99.14% in 4 to 8 minutes. With the default patience of 3,
# one run of two stopped at epoch 8 with 98.93%; a learning rate of 5e-4 did
# no better (99.07% after 20 epochs). _ORDER_NOTE says why.
FULL_SETTINGS = ('--epochs', '20', '--early-stopping-patience', '5')
QUICK_SETTINGS = ('--epochs', '1')
_ORDER_NOTE = (
    'Why it took this long (figures measured before commit "trainer: shuffle '
    'the file list before reading"): `imgcls train` listed the files class '
    'by class (trainer.standalone -> trainer.dataset.files_dataset) and '
    'shuffled them through a 10,000-image buffer, so with 60,000 training '
    'images each batch held two or three of the ten classes. Training swings from '
    'class to class; the validation loss jumps from epoch to epoch and '
    'early stopping needs patience. With the file list shuffled first '
    '(tried outside the benchmark, same model and settings) the test '
    'accuracy was 99.09% after 2 epochs and 99.2% after 3 to 5. The TFX '
    'pipeline does not have this problem: the ExampleGen writes its '
    'examples in shuffled order.')
_SAVED = re.compile(r'^saved model: (.+)$', re.MULTILINE)
# Keras' line at the end of each epoch (verbose=2), e.g. '469/469 - 25s - ...'.
_EPOCH = re.compile(r'^\d+/\d+ - .* val_loss: ', re.MULTILINE)


def run(session: common.Session) -> common.Result:
  settings = QUICK_SETTINGS if session.quick else FULL_SETTINGS
  root = data.dataset(session, 300 if session.quick else 70_000)
  out = os.path.join(session.work_dir, NAME)
  shutil.rmtree(out, ignore_errors=True)
  os.makedirs(out)
  log_path = os.path.join(out, 'train.log')
  seconds = common.run_command(
      ['imgcls.cli', 'train', '--train-dir', os.path.join(root, 'train'),
       '--test-dir', os.path.join(root, 'test'), '--model-dir',
       os.path.join(out, 'models'), *settings], log_path)
  with open(log_path) as f:
    log = f.read()
  model_path = _SAVED.search(log).group(1)
  epochs = len(_EPOCH.findall(log))
  evaluation = standalone.evaluate(model_path, os.path.join(root, 'test'))
  accuracy = evaluation.by_signature['serving_bytes'].accuracy
  return _result(session, settings, seconds, epochs, accuracy,
                 evaluation.count)


def _result(session, settings, seconds, epochs, accuracy,
            test_count) -> common.Result:
  met = accuracy >= TARGET
  defaults = TrainingConfig()
  command = ('imgcls train --train-dir .../train --test-dir .../test '
             f'--model-dir ... {" ".join(settings)}')
  notes = [
      f'{epochs} epochs trained in {seconds / 60:.1f} min '
      f'({seconds / max(epochs, 1):.0f} s per epoch with its validation). '
      'As in `imgcls train`, the test folder is also the validation set: '
      'early stopping restores the weights of the epoch with the lowest '
      'test loss, so the figure is slightly optimistic against a held-out '
      'set.'
  ]
  if not session.quick:
    notes.append(_ORDER_NOTE)
  if not met:
    notes.append(f'Not met: {accuracy:.2%} < {TARGET:.0%}.' + (
        ' Quick mode trains far too little to reach it.'
        if session.quick else ''))
  return common.Result(
      name=NAME, title=TITLE,
      setup=(f'`{command}`, other settings at their defaults (batch '
             f'{defaults.batch_size}, Adam learning rate '
             f'{defaults.learning_rate:g}). {data.describe(session)} class '
             f'folders ({test_count:,} test images).'),
      figures=[
          common.Figure('test accuracy', accuracy * 100, '%',
                        target=f'>= {TARGET:.1%}', met=met),
          common.Figure('training time', seconds / 60, 'min'),
      ],
      notes=notes, quick=session.quick)
