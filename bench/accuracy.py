"""5. Accuracy: LeNet on the full MNIST set by `imgcls train`, and its time.

The command is timed from start to exit; the accuracy is measured afterwards
on the 10,000 test images through the published SavedModel's serving_bytes
signature (trainer.standalone.evaluate), as a client would get it. Early
stopping watches a held-out tenth of the training images, never the test
set, so the figure is honest. The same command with `--augment none` runs
beside it, to show what the model class's augmentation is worth.
"""
import os
import re
import shutil

from bench import common, data
from imgcls.trainer import standalone
from imgcls.trainer.config import TrainingConfig

NAME = 'accuracy'
TITLE = 'Accuracy: LeNet on MNIST'
TARGET = 0.994
TARGET_MINUTES = 5.0
# LenetModel's own augmentation (shifts, rotations, zooms), a cosine schedule
# after a 5% warmup, a little label smoothing, and patience above the epochs,
# so that the schedule runs to its end. Ten epochs of about 15-20 s each on an
# idle 2-core machine leave the 5 minutes some room.
FULL_SETTINGS = ('--epochs', '10', '--lr-schedule', 'cosine',
                 '--learning-rate', '0.002', '--label-smoothing', '0.1',
                 '--validation-fraction', '0.1',
                 '--early-stopping-patience', '10')
QUICK_SETTINGS = ('--epochs', '1', '--validation-fraction', '0.1')
_NO_AUGMENTATION = ('--augment', 'none')
_SAVED = re.compile(r'^saved model: (.+)$', re.MULTILINE)
# The console's line at the end of each epoch (trainer.progress), e.g.
# '  epoch 3/10: accuracy 0.9912, ...'.
_EPOCH = re.compile(r'^\s*(\S+: )?epoch \d+/\d+: ', re.MULTILINE)


def _train(session, root: str, name: str, settings):
  """(accuracy, seconds, epochs, test images) of one `imgcls train`."""
  out = os.path.join(session.work_dir, NAME, name)
  shutil.rmtree(out, ignore_errors=True)
  os.makedirs(out)
  log_path = os.path.join(out, 'train.log')
  seconds = common.run_command(
      ['imgcls.cli', 'train', '--train-dir', os.path.join(root, 'train'),
       '--test-dir', os.path.join(root, 'test'), '--model-dir',
       os.path.join(out, 'models'), *settings], log_path)
  with open(log_path) as f:
    log = f.read()
  evaluation = standalone.evaluate(_SAVED.search(log).group(1),
                                   os.path.join(root, 'test'))
  return (evaluation.by_signature['serving_bytes'].accuracy, seconds,
          len(_EPOCH.findall(log)), evaluation.count)


def run(session: common.Session) -> common.Result:
  settings = QUICK_SETTINGS if session.quick else FULL_SETTINGS
  root = data.dataset(session, 300 if session.quick else 70_000)
  augmented = _train(session, root, 'augmented', settings)
  plain = _train(session, root, 'no-augmentation',
                 (*settings, *_NO_AUGMENTATION))
  return _result(session, settings, augmented, plain)


def _result(session, settings, augmented, plain) -> common.Result:
  accuracy, seconds, epochs, test_count = augmented
  minutes = seconds / 60
  met = accuracy >= TARGET and minutes <= TARGET_MINUTES
  defaults = TrainingConfig()
  command = ('imgcls train --train-dir .../train --test-dir .../test '
             f'--model-dir ... {" ".join(settings)}')
  notes = [
      f'{epochs} epochs trained in {minutes:.1f} min, start-up and the '
      f'listing of 70,000 files included ({seconds / max(epochs, 1):.0f} s '
      'per epoch with its validation). Early stopping and the checkpoint '
      'watch a held-out 10% of the training images (by a hash of the path), '
      'not the test folder.',
      f'With `--augment none` and otherwise the same settings: '
      f'{plain[0]:.2%} in {plain[1] / 60:.1f} min ({plain[2]} epochs).',
      'The machine is shared: the load averages above say how busy it '
      'was; on a busy machine the time is pessimistic.',
      'On GPUs the Trainer uses MirroredStrategy and mixed_float16 (float32 '
      'logits); those figures are unmeasured: no GPU was available.',
  ]
  if not met:
    notes.append(
        f'Not met: {accuracy:.2%} (target {TARGET:.1%}) in {minutes:.1f} '
        f'min (target {TARGET_MINUTES:g}).' +
        (' Quick mode trains far too little to reach it.'
         if session.quick else ''))
  return common.Result(
      name=NAME, title=TITLE,
      setup=(f'`{command}`, other settings at their defaults (batch '
             f'{defaults.batch_size}, augmentation {defaults.augment}: '
             'LenetModel\'s shifts, rotations and zooms). '
             f'{data.describe(session)} class folders ({test_count:,} test '
             'images).'),
      figures=[
          common.Figure('test accuracy', accuracy * 100, '%',
                        '--augment none', plain[0] * 100,
                        target=f'>= {TARGET:.1%}', met=accuracy >= TARGET),
          common.Figure('training time', minutes, 'min', '--augment none',
                        plain[1] / 60, target=f'<= {TARGET_MINUTES:g} min',
                        met=minutes <= TARGET_MINUTES),
      ],
      notes=notes, quick=session.quick)
