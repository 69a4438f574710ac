"""2. Input pipeline: Trainer steps/s on TFRecords against in-memory tensors.

Both train LeNet with the Trainer's own loop (trainer.training.fit: same
compile, callbacks and validation), from the same initial weights. One reads
the ExampleGen's gzipped TFRecords through trainer.dataset.examples_dataset
(parse, decode, cache, shuffle, batch, prefetch), as run_fn does; the other
gets the same decoded pixels as tensors already in memory
(`from_tensor_slices`, shuffled and batched). Only training steps are timed,
from the start of an epoch to the start of its validation.
"""
import math
import os
import shutil
import time
from typing import List, Tuple

import numpy as np
import tensorflow as tf

from bench import common
from bench import data
from bench import ingest
from components import data_layout
from trainer import dataset
from trainer import training
from trainer.config import TrainingConfig

NAME = 'input'
TITLE = 'Input pipeline: Trainer on TFRecords'
TARGET = 0.9  # steps/s at least 90% of in-memory
_IN_MEMORY = 'in-memory tensors'


class _TrainingTimer(tf.keras.callbacks.Callback):
  """Seconds of training steps per epoch, validation left out."""

  def __init__(self):
    super().__init__()
    self.seconds: List[float] = []
    self._start = None

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_test_begin(self, logs=None):
    if self._start is not None:  # validation during fit, not a later evaluate
      self.seconds.append(time.perf_counter() - self._start)
      self._start = None


def _split_files(records_dir: str, split: str) -> List[str]:
  return [os.path.join(records_dir, f'Split-{split}', '*')]


def _in_memory(files: List[str], config: TrainingConfig
              ) -> Tuple[tf.Tensor, tf.Tensor]:
  """The split decoded once by the same preprocessing, as tensors."""
  batches = list(dataset.examples_dataset(files, config.input_shape,
                                          config.batch_size, shuffle=False,
                                          cache_limit_mb=0))
  return (tf.constant(np.concatenate([x for x, _ in batches])),
          tf.constant(np.concatenate([y for _, y in batches])))


def _tensor_dataset(tensors, batch_size: int, shuffle: bool):
  ds = tf.data.Dataset.from_tensor_slices(tensors)
  if shuffle:
    ds = ds.shuffle(len(tensors[1]), reshuffle_each_iteration=True)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _epoch_seconds(config, class_names, train_ds, eval_ds) -> List[float]:
  tf.keras.utils.set_random_seed(0)
  model = training.build_model(config, class_names)
  timer = _TrainingTimer()
  training.fit(model, config, train_ds, eval_ds, [timer])
  return timer.seconds


def run(session: common.Session) -> common.Result:
  size = 300 if session.quick else 70_000
  # No early stopping: every epoch is trained.
  config = TrainingConfig(epochs=2 if session.quick else 4,
                          early_stopping_patience=100)
  root = data.dataset(session, size)
  records = os.path.join(session.work_dir, NAME, 'examples')
  shutil.rmtree(records, ignore_errors=True)
  ingest.write_tfrecords(root, records)
  class_names = data_layout.resolve(root).class_names
  train_files, test_files = (_split_files(records, s)
                             for s in data_layout.SPLITS)
  train, test = _in_memory(train_files, config), _in_memory(test_files,
                                                             config)
  in_memory = _epoch_seconds(
      config, class_names, _tensor_dataset(train, config.batch_size, True),
      _tensor_dataset(test, config.batch_size, False))
  with common.Timer() as setup:
    train_ds, eval_ds = (dataset.examples_dataset(
        files, config.input_shape, config.batch_size, shuffle=shuffle,
        cache_limit_mb=config.cache_limit_mb)
                         for files, shuffle in ((train_files, True),
                                                (test_files, False)))
  records_seconds = _epoch_seconds(config, class_names, train_ds, eval_ds)
  steps = math.ceil(len(train[1]) / config.batch_size)
  return _result(session, config, len(train[1]), steps, in_memory,
                 records_seconds, setup.seconds)


def _result(session, config, images, steps, in_memory, records,
            setup_seconds) -> common.Result:
  steady = steps / common.median(records[1:])
  steady_peer = steps / common.median(in_memory[1:])
  met = steady >= TARGET * steady_peer
  figures = [
      common.Figure('steps/s after the first epoch', steady, 'steps/s',
                    _IN_MEMORY, steady_peer,
                    f'>= {TARGET:.0%} of in-memory', met),
      common.Figure('steps/s in the first epoch (read, decode, cache)',
                    steps / records[0], 'steps/s', _IN_MEMORY,
                    steps / in_memory[0]),
  ]
  details = [['epoch', 'TFRecords (s)', 'in-memory (s)']]
  details += [[str(i + 1), f'{r:.2f}', f'{m:.2f}']
              for i, (r, m) in enumerate(zip(records, in_memory))]
  notes = [
      f'Steady state the Trainer reaches {steady / steady_peer:.0%} of the '
      f'in-memory rate: from the second epoch its pipeline serves decoded '
      f'images from tf.data\'s in-memory cache, so only the first epoch pays '
      f'for reading and decoding. Building the dataset (one counting pass '
      f'over the TFRecords) took {setup_seconds:.2f} s more.'
  ]
  if not met:
    notes.append(f'Not met: {steady / steady_peer:.0%} < {TARGET:.0%}.')
  return common.Result(
      name=NAME, title=TITLE,
      setup=(f'LeNet, {images:,} {data.describe(session)} training images, '
             f'batch {config.batch_size}, {config.epochs} epochs, {steps} '
             f'steps per epoch; steady state is the median of epochs 2 to '
             f'{config.epochs}. Same seed for both models.'),
      figures=figures, details=details, notes=notes,
      machine=common.machine(), quick=session.quick)
