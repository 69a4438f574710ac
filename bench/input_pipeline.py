"""2. Input pipeline: Trainer images/s on TFRecords against in-memory tensors.

On two kinds of data: MNIST's 28x28 PNGs, and photo-like 640x480 JPEGs that
the Trainer decodes and resizes to 96x96x3.

Both train LeNet with the Trainer's own loop (trainer.training.fit: same
compile, callbacks and validation), from the same initial weights. One reads
the ExampleGen's gzipped TFRecords through trainer.dataset.examples_dataset
(parse, decode, cache, shuffle, batch, prefetch), as run_fn does; the other
gets the same decoded pixels as tensors already in memory
(`from_tensor_slices`, shuffled and batched). Only training steps are timed,
from the start of an epoch to the start of its validation.
"""
import dataclasses
import math
import os
import tempfile
import time
from typing import List, Tuple

import numpy as np
import tensorflow as tf

from bench import common, data, ingest
from imgcls.contract import names
from imgcls.imagedata import data_layout
from imgcls.pipeline import results
from imgcls.trainer import dataset, training
from imgcls.trainer.config import TrainingConfig

NAME = 'input'
TITLE = 'Input pipeline: Trainer on TFRecords'
TARGET = 0.9  # images/s at least 90% of in-memory
# The photo case (issue 18): JPEGs decoded and resized to a small colour input.
PHOTOS = 5_000
PHOTO_SHAPE = (96, 96, 3)
_DIGITS = 'digits'
_PHOTOS = 'photos'
_IN_MEMORY = 'in-memory tensors'
_RECORDS = 'TFRecords'


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


def _in_memory(files: List[str], count: int, config: TrainingConfig
              ) -> Tuple[tf.Tensor, tf.Tensor]:
  """The split decoded once by the same preprocessing, as tensors."""
  batches = list(dataset.examples_dataset(files, count, config.input_shape,
                                          config.batch_size, shuffle=False,
                                          cache_limit_mb=0))
  return (tf.constant(np.concatenate([x for x, _ in batches])),
          tf.constant(np.concatenate([y for _, y in batches])))


def _tensor_dataset(tensors, batch_size: int, shuffle: bool):
  ds = tf.data.Dataset.from_tensor_slices(tensors)
  if shuffle:
    ds = ds.shuffle(len(tensors[1]), reshuffle_each_iteration=True)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _epoch_seconds(config, class_names, counts, train_ds, eval_ds
                  ) -> List[float]:
  """With the Trainer's whole loop: augmentation, class weights and the
  BackupAndRestore of every epoch included."""
  tf.keras.utils.set_random_seed(0)
  model = training.build_model(config, class_names)
  timer = _TrainingTimer()
  inputs = dataset.Inputs(train_ds, eval_ds, sum(counts), counts)
  with tempfile.TemporaryDirectory() as backup_dir:
    training.fit(model, config, inputs, training.Backup(backup_dir), [timer])
  return timer.seconds


def run(session: common.Session) -> common.Result:
  rounds = 1 if session.quick else 2
  # No early stopping: every epoch is trained.
  config = TrainingConfig(epochs=2 if session.quick else 3,
                          early_stopping_patience=100)
  digits = data.dataset(session, 300 if session.quick else 70_000)
  photos = data.photos(session, 300 if session.quick else PHOTOS)
  measured = {
      label: _measure(session, root, label, rounds, config)
      for label, root, config in (
          (_DIGITS, digits, config),
          (_PHOTOS, photos, dataclasses.replace(config,
                                                input_shape=PHOTO_SHAPE)))
  }
  return _result(session, config, rounds, measured)


def _measure(session, root: str, label: str, rounds: int,
             config: TrainingConfig):
  """(images, steps per epoch, {side: [epoch seconds of each fit]})."""
  pipeline_root = os.path.join(session.work_dir, NAME, label, 'pipeline')
  ingest.example_gen_seconds(root, pipeline_root)
  examples = results.load_run(pipeline_root)
  facts = examples.dataset
  counts = facts.class_counts('train')
  train_files, test_files = (
      [os.path.join(examples.uri(names.ARTIFACT_EXAMPLES), f'Split-{split}',
                    '*')]
      for split in data_layout.SPLITS)
  train, test = (_in_memory(files, facts.examples[split], config)
                 for files, split in ((train_files, 'train'),
                                      (test_files, 'test')))
  datasets = {
      _RECORDS: lambda: (
          _records(train_files, facts.examples['train'], config, True),
          _records(test_files, facts.examples['test'], config, False)),
      _IN_MEMORY: lambda: (_tensor_dataset(train, config.batch_size, True),
                           _tensor_dataset(test, config.batch_size, False)),
  }
  # Taking turns, so that a busy spell of a shared machine does not fall
  # on one side only.
  epochs = {side: [] for side in datasets}
  for _ in range(rounds):
    for side, make in datasets.items():
      epochs[side].append(_epoch_seconds(config, facts.class_names, counts,
                                         *make()))
  return len(train[1]), math.ceil(len(train[1]) / config.batch_size), epochs


def _records(files, count: int, config: TrainingConfig, shuffle: bool):
  """The Trainer's input pipeline, as run_fn builds it."""
  return dataset.examples_dataset(files, count, config.input_shape,
                                  config.batch_size, shuffle=shuffle,
                                  cache_limit_mb=config.cache_limit_mb)


def _result(session, config, rounds, measured) -> common.Result:
  """Best epochs: interference only ever slows a run down."""
  figures, notes = [], []
  details = [['data', 'round', 'epoch', f'{_RECORDS} (s)',
              f'{_IN_MEMORY} (s)']]
  for label, (images, steps, epochs) in measured.items():
    first = {side: images / min(fit[0] for fit in fits)
             for side, fits in epochs.items()}
    steady = {side: images / min(s for fit in fits for s in fit[1:])
              for side, fits in epochs.items()}
    ratio = steady[_RECORDS] / steady[_IN_MEMORY]
    met = ratio >= TARGET
    figures += [
        common.Figure(f'{label}: images/s after the first epoch',
                      steady[_RECORDS], 'images/s', _IN_MEMORY,
                      steady[_IN_MEMORY], f'>= {TARGET:.0%} of in-memory',
                      met),
        common.Figure(f'{label}: images/s in the first epoch (read, decode, '
                      'cache)', first[_RECORDS], 'images/s', _IN_MEMORY,
                      first[_IN_MEMORY]),
    ]
    for round_, fits in enumerate(zip(*epochs.values()), 1):
      details += [[label, str(round_), str(epoch),
                   *(f'{s:.2f}' for s in seconds)]
                  for epoch, seconds in enumerate(zip(*fits), 1)]
    notes.append(
        f'{label}: after the first epoch the Trainer runs at {ratio:.0%} of '
        f'the in-memory rate ({images:,} images, {steps} steps an epoch)' +
        ('' if met else f'; not met: {ratio:.0%} < {TARGET:.0%}') + '.')
  notes.append('Only the first epoch pays for reading and decoding the '
               'TFRecords: later ones are served from tf.data\'s in-memory '
               'cache of decoded uint8 images.')
  return common.Result(
      name=NAME, title=TITLE,
      setup=(f'LeNet on the training images as the ImageExampleGen wrote '
             f'them: {_DIGITS} ({data.describe(session)}, '
             f'{config.input_shape[0]}x{config.input_shape[1]}x'
             f'{config.input_shape[2]}) and {_PHOTOS} (640x480 JPEGs made '
             f'from the same digits, bench.data.photos, at '
             f'{"x".join(map(str, PHOTO_SHAPE))}); batch {config.batch_size}, '
             f'{config.epochs} epochs, fitted {rounds} time(s) each, taking '
             f'turns; the figures are the best epochs. Same initial weights '
             f'for every fit.'),
      figures=figures, details=details, notes=notes, quick=session.quick)
