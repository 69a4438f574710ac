"""Training progress for a person at the console: a bar over each epoch's
batches on a terminal, and a line per finished epoch with its metrics.

Keras' own progress output goes to the log file with everything else
(imgcls/contract/console.py); this is what stays on the terminal.
"""
import tensorflow as tf
import tqdm

from imgcls.contract import progress


class EpochProgress(tf.keras.callbacks.Callback):
  """Reports each finished epoch through contract.progress."""

  def __init__(self, stage: str = ''):
    super().__init__()
    self._stage = f'{stage}: ' if stage else ''
    self._bar = None

  def on_epoch_begin(self, epoch, logs=None):
    console = progress.console()
    self._bar = tqdm.tqdm(
        total=self.params.get('steps'), unit='batch', leave=False,
        desc=f'{self._stage}epoch {epoch + 1}/{self.params.get("epochs")}',
        file=console, disable=not _is_terminal(console), mininterval=0.5)

  def on_train_batch_end(self, batch, logs=None):
    self._bar.update(1)

  def on_epoch_end(self, epoch, logs=None):
    self._bar.close()
    metrics = ', '.join(f'{name} {value:.4f}'
                        for name, value in sorted((logs or {}).items()))
    progress.report('  %sepoch %d/%s: %s', self._stage, epoch + 1,
                    self.params.get('epochs'), metrics)


def _is_terminal(stream) -> bool:
  try:
    return stream.isatty()
  except (AttributeError, ValueError):
    return False
