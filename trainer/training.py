"""The training loop shared by `imgcls train`, the TFX Trainer's run_fn and
the Tuner's trials: devices, schedules, class weights and resuming."""
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
from typing import Dict, Iterator, List, Optional, Sequence

import tensorflow as tf

from imgcls.contract import files
from imgcls.trainer import dataset, models
from imgcls.trainer.config import TrainingConfig
from imgcls.trainer.dataset import Inputs
from imgcls.trainer.progress import EpochProgress

History = Dict[str, List[float]]


@dataclasses.dataclass
class Devices:
  """Where training runs: the strategy, and the dtype policy of the layers."""
  strategy: tf.distribute.Strategy
  policy: str
  gpus: int = 0

  @property
  def replicas(self) -> int:
    return self.strategy.num_replicas_in_sync

  @property
  def augments_in_train_step(self) -> bool:
    """On GPUs the model's augmentation stays in its train_step, on the
    device (not measured: no GPU was at hand). On CPUs the training step
    keeps every core busy only part of the time, and augmenting inside it
    adds to it on the training thread; tf.data's parallel map augments the
    next batches beside it instead (issue 26)."""
    return self.gpus > 0


def precision_policy(gpus: Sequence[str]) -> str:
  """mixed_float16 on GPUs, whose tensor cores run float16 several times
  faster; float32 on CPUs, where float16 is emulated and slower."""
  return 'mixed_float16' if gpus else 'float32'


def devices(gpus: Optional[Sequence[str]] = None) -> Devices:
  """MirroredStrategy and mixed precision over the visible GPUs; without
  GPUs, the default strategy and float32, as if this did not exist."""
  if gpus is None:
    gpus = [g.name for g in tf.config.list_logical_devices('GPU')]
  if not gpus:
    return Devices(tf.distribute.get_strategy(), precision_policy(gpus))
  logging.info('training on %d GPU(s) with MirroredStrategy and %s: %s',
               len(gpus), precision_policy(gpus), list(gpus))
  return Devices(tf.distribute.MirroredStrategy(list(gpus)),
                 precision_policy(gpus), len(gpus))


@contextlib.contextmanager
def _placed(where: Optional[Devices]) -> Iterator[None]:
  """Builds under the strategy and dtype policy, then restores the global
  policy: the Trainer shares its process with other components."""
  if where is None:
    yield
    return
  previous = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy(where.policy)
  try:
    with where.strategy.scope():
      yield
  finally:
    tf.keras.mixed_precision.set_global_policy(previous)


def build_model(config: TrainingConfig, class_names: Sequence[str],
                where: Optional[Devices] = None) -> models.ImageClassifierModel:
  with _placed(where):
    model = models.build_model(config.model_type, config.input_shape,
                               class_names, **config.model_options)
  model.use_augmentation(config.augment == 'default',
                         in_train_step=bool(where and
                                            where.augments_in_train_step))
  return model


def class_weights(config: TrainingConfig,
                  counts: Sequence[int]) -> Optional[Dict[int, float]]:
  """'balanced': total / (classes * count), so every class weighs as much in
  the loss as if the classes were equally common (scikit-learn's rule)."""
  if config.class_weight == 'none':
    return None
  total = sum(counts)
  return {label: total / (len(counts) * max(count, 1))
          for label, count in enumerate(counts)}


def learning_rate(config: TrainingConfig, scale: float, steps_per_epoch: int):
  """One stage's rate: constant, or a linear warmup then cosine decay to zero
  over the stage's epochs (tf_keras' CosineDecay with warmup_target)."""
  peak = config.learning_rate * scale
  if config.lr_schedule == 'constant':
    return peak
  total = max(2, steps_per_epoch * config.epochs)
  warmup = max(1, int(total * config.warmup_fraction))
  return tf.keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=0.0, decay_steps=total - warmup,
      warmup_target=peak, warmup_steps=warmup)


class SmoothedSparseCrossentropy(tf.keras.losses.Loss):
  """Cross-entropy of integer labels with label smoothing, which tf_keras'
  SparseCategoricalCrossentropy lacks: the labels become one-hot first."""

  def __init__(self, label_smoothing: float, name='smoothed_crossentropy',
               **kwargs):
    super().__init__(name=name, **kwargs)
    self.label_smoothing = label_smoothing

  def call(self, y_true, y_pred):
    labels = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32),
                        tf.shape(y_pred)[-1])
    return tf.keras.losses.categorical_crossentropy(
        labels, y_pred, from_logits=True,
        label_smoothing=self.label_smoothing)

  def get_config(self):
    return {**super().get_config(), 'label_smoothing': self.label_smoothing}


def _loss(config: TrainingConfig) -> tf.keras.losses.Loss:
  if config.label_smoothing:
    return SmoothedSparseCrossentropy(config.label_smoothing)
  return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class _EpochLog(tf.keras.callbacks.Callback):
  """Each finished epoch's metrics, written to a file as it ends, so that a
  resumed stage still reports the epochs trained before the interruption."""

  def __init__(self, path: str):
    super().__init__()
    self.path = path

  def read(self) -> Dict[int, Dict[str, float]]:
    if not tf.io.gfile.exists(self.path):
      return {}
    with tf.io.gfile.GFile(self.path) as f:
      return {int(epoch): logs for epoch, logs in json.load(f).items()}

  def on_epoch_end(self, epoch, logs=None):
    # By epoch number: an epoch logged but not backed up is trained again.
    epochs = self.read()
    epochs[epoch] = {k: float(v) for k, v in (logs or {}).items()}
    files.write_json_atomically(self.path, epochs)


def backup_key(*identity) -> str:
  """A directory name for one training: the same for a retry with the same
  data and settings, different for any other, whose backup would not fit."""
  return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()
                       ).hexdigest()[:16]


class Backup:
  """Resuming after an interruption: tf.keras.callbacks.BackupAndRestore for
  the stage being trained, and each finished stage's weights and history.

  Everything lives under `root`, which the caller keeps the same across
  retries of the same training and removes once it has finished. Stages are
  separate fits, and BackupAndRestore deletes its backup when a fit ends, so
  a finished stage is recorded here, or a kill in the next stage would train
  it again.
  """

  def __init__(self, root: str):
    self.root = root

  def _path(self, stage: str, what: str) -> str:
    return os.path.join(self.root, f'stage-{stage}', what)

  def epoch_log(self, stage: str) -> _EpochLog:
    return _EpochLog(self._path(stage, 'epochs.json'))

  def callbacks(self, stage: str) -> List[tf.keras.callbacks.Callback]:
    # The log first: an epoch is logged before it counts as backed up.
    return [self.epoch_log(stage),
            tf.keras.callbacks.BackupAndRestore(self._path(stage, 'keras'))]

  def finished(self, stage: str) -> bool:
    return tf.io.gfile.exists(self._path(stage, 'done'))

  def finish(self, model: tf.keras.Model, stage: str) -> None:
    model.save_weights(self._path(stage, 'weights/ckpt'))
    files.write_json_atomically(self._path(stage, 'done'), {})

  def restore(self, model: tf.keras.Model, stage: str) -> None:
    model.load_weights(self._path(stage, 'weights/ckpt')).expect_partial()

  def remove(self) -> None:
    """Once training has finished: the backup, and its parent (the root of
    all backups) when no other training's is left in it."""
    if tf.io.gfile.exists(self.root):
      tf.io.gfile.rmtree(self.root)
    parent = os.path.dirname(self.root)
    if tf.io.gfile.exists(parent) and not tf.io.gfile.listdir(parent):
      tf.io.gfile.rmtree(parent)


def fit(model: models.ImageClassifierModel, config: TrainingConfig,
        inputs: Inputs, backup: Backup,
        callbacks: Sequence[tf.keras.callbacks.Callback] = (),
        where: Optional[Devices] = None) -> History:
  """Trains each of the model's stages for `config.epochs` epochs.

  Each stage has its own learning-rate schedule. Early stopping restores the
  best weights of each stage (of the epochs since a resume). A stage that a
  retry finds finished is skipped, and one interrupted resumes from its last
  finished epoch. Returns the per-epoch history of all stages, in order.
  """
  replicas = where.replicas if where else 1
  steps_per_epoch = max(1, math.ceil(inputs.train_count /
                                     (config.batch_size * replicas)))
  weights = class_weights(config, inputs.class_counts)
  history: History = {}
  epoch = 0
  skipped = None  # the last finished stage whose weights are not loaded yet
  stages = model.training_stages()
  for stage in stages:
    stage.enter(model)
    name = stage.name
    if backup.finished(name):
      skipped = name
    else:
      if skipped:
        backup.restore(model, skipped)
        skipped = None
      with _placed(where):
        model.compile(
            optimizer=tf.keras.optimizers.Adam(learning_rate(
                config, stage.learning_rate_scale, steps_per_epoch)),
            loss=_loss(config),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy('accuracy')])
      early_stopping = tf.keras.callbacks.EarlyStopping(
          monitor='val_loss', patience=config.early_stopping_patience,
          restore_best_weights=True)
      model.fit(dataset.augmented(inputs.train, model.input_augmentation()),
                validation_data=inputs.validation,
                initial_epoch=epoch, epochs=epoch + config.epochs,
                class_weight=weights,
                callbacks=[*backup.callbacks(name), early_stopping,
                           EpochProgress(name if len(stages) > 1 else ''),
                           *callbacks], verbose=0)
      backup.finish(model, name)
    epochs = backup.epoch_log(name).read()
    epoch += len(epochs)
    for logs in (epochs[e] for e in sorted(epochs)):
      for key, value in logs.items():
        history.setdefault(key, []).append(value)
  if skipped:
    backup.restore(model, skipped)
  return history


