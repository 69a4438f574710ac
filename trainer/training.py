"""The training loop shared by `imgcls train`, the TFX Trainer's run_fn and
the Tuner's trials: devices, schedules, class weights and resuming."""
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import tensorflow as tf

from imgcls.contract import files
from imgcls.trainer import cluster, dataset, models
from imgcls.trainer.config import TrainingConfig
from imgcls.trainer.dataset import Inputs
from imgcls.trainer.progress import EpochProgress

History = Dict[str, List[float]]


@dataclasses.dataclass
class Devices:
  """Where training runs: the strategy, the dtype policy of the layers, and
  which of several replica processes this is (cluster.ALONE: the only one)."""
  strategy: tf.distribute.Strategy
  policy: str
  gpus: int = 0
  replica: cluster.Replica = cluster.ALONE

  @property
  def replicas(self) -> int:
    return self.strategy.num_replicas_in_sync

  def global_batch(self, batch_size: int) -> int:
    """The examples of one optimizer step: `batch_size` for each device of
    one worker (a GPU, or the CPU). Several workers split that batch, so
    the steps and the learning rate stay those of one worker."""
    return batch_size * self.replicas // self.replica.count

  @property
  def shard(self) -> dataset.Shard:
    return dataset.Shard(self.replica.count, self.replica.index)

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
  GPUs, the default strategy and float32, as if this did not exist. With a
  TF_CONFIG naming several replicas, MultiWorkerMirroredStrategy over them.

  Called before any other TensorFlow op of the process: collective ops are
  configured when MultiWorkerMirroredStrategy is made, and refused after
  any op has run ("Collective ops must be configured at program startup").
  """
  replica = cluster.replica()
  if replica.several:
    return _replicated(replica, gpus)
  if gpus is None:
    gpus = [g.name for g in tf.config.list_logical_devices('GPU')]
  if not gpus:
    return Devices(tf.distribute.get_strategy(), precision_policy(gpus))
  logging.info('training on %d GPU(s) with MirroredStrategy and %s: %s',
               len(gpus), precision_policy(gpus), list(gpus))
  return Devices(tf.distribute.MirroredStrategy(list(gpus)),
                 precision_policy(gpus), len(gpus))


def _replicated(replica: cluster.Replica,
                gpus: Optional[Sequence[str]]) -> Devices:
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  if gpus is None:
    gpus = [g.name for g in tf.config.list_logical_devices('GPU')]
  logging.info('training as replica %d of %d with MultiWorkerMirroredStrategy '
               '(%d GPU(s) here) and %s', replica.index, replica.count,
               len(gpus), precision_policy(gpus))
  return Devices(strategy, precision_policy(gpus), len(gpus), replica)


def after_export(where: Devices, path: str) -> None:
  """Returns once every replica has exported, and the chief's export is
  visible here.

  TFX's Trainer executor checks on every replica that the serving model
  directory exists once run_fn returns (tensorflow/tfx@v1.21.0:
  tfx/components/trainer/executor.py, GenericExecutor.Do), and only the
  chief's export is kept: the other replicas wait for the chief here, then
  find its export, or say why not.
  """
  if not where.replica.several:
    return
  wait_for_all(where)
  if not tf.io.gfile.exists(path):
    raise RuntimeError(
        f'replica {where.replica.index} of {where.replica.count}: the '
        f"chief's export {path} is not visible here; the replicas need the "
        'pipeline root on storage they all share')


def wait_for_all(where: Devices) -> None:
  """Returns once every replica has called it: a sum over all of them."""
  if not where.replica.several:
    return
  strategy = where.strategy
  ones = strategy.run(tf.function(lambda: tf.distribute.get_replica_context(
  ).all_reduce(tf.distribute.ReduceOp.SUM, tf.constant(1))))
  strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)


def save_on_every_replica(replica: cluster.Replica, path: str,
                          save: Callable[[str], None]) -> None:
  """`save(path)` on the chief, `save` into a temporary folder, then deleted,
  on every other replica: saving reads the variables synchronised across
  replicas, so each replica takes part, but only the chief's files are
  kept (as tf_keras' ModelCheckpoint and BackupAndRestore do,
  tf_keras/src/distribute/distributed_file_utils.py)."""
  if replica.is_chief:
    save(path)
    return
  with tempfile.TemporaryDirectory(prefix='imgcls-replica-') as scratch:
    save(os.path.join(scratch, os.path.basename(path.rstrip('/'))))


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
  resumed stage still reports the epochs trained before the interruption.

  Read once, when made: afterwards the epochs are this object's, so that a
  replica that does not write the file (`writes`) never reads it while the
  chief writes it.
  """

  def __init__(self, path: str, writes: bool = True):
    super().__init__()
    self.path = path
    self.writes = writes
    self.epochs = self._read()

  def _read(self) -> Dict[int, Dict[str, float]]:
    if not tf.io.gfile.exists(self.path):
      return {}
    with tf.io.gfile.GFile(self.path) as f:
      return {int(epoch): logs for epoch, logs in json.load(f).items()}

  def on_epoch_end(self, epoch, logs=None):
    # By epoch number: an epoch logged but not backed up is trained again.
    self.epochs[epoch] = {k: float(v) for k, v in (logs or {}).items()}
    if self.writes:
      files.write_json_atomically(self.path, self.epochs)


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
  it again. Of several replicas, the chief alone writes here; all read.
  """

  def __init__(self, root: str, replica: cluster.Replica = cluster.ALONE):
    self.root = root
    self.replica = replica

  def _path(self, stage: str, what: str) -> str:
    return os.path.join(self.root, f'stage-{stage}', what)

  def epoch_log(self, stage: str) -> _EpochLog:
    return _EpochLog(self._path(stage, 'epochs.json'), self.replica.is_chief)

  def callbacks(self, stage: str, log: _EpochLog
               ) -> List[tf.keras.callbacks.Callback]:
    # The log first: an epoch is logged before it counts as backed up.
    # BackupAndRestore keeps the chief's backup of several replicas itself
    # (tf_keras/src/distribute/worker_training_state.py).
    return [log,
            tf.keras.callbacks.BackupAndRestore(self._path(stage, 'keras'))]

  def finished(self, stage: str) -> bool:
    return tf.io.gfile.exists(self._path(stage, 'done'))

  def finish(self, model: tf.keras.Model, stage: str) -> None:
    save_on_every_replica(self.replica, self._path(stage, 'weights/ckpt'),
                          model.save_weights)
    if self.replica.is_chief:
      files.write_json_atomically(self._path(stage, 'done'), {})

  def restore(self, model: tf.keras.Model, stage: str) -> None:
    model.load_weights(self._path(stage, 'weights/ckpt')).expect_partial()

  def remove(self) -> None:
    """Once training has finished: the backup, and its parent (the root of
    all backups) when no other training's is left in it."""
    if not self.replica.is_chief:
      return
    if tf.io.gfile.exists(self.root):
      tf.io.gfile.rmtree(self.root)
    parent = os.path.dirname(self.root)
    if tf.io.gfile.exists(parent) and not tf.io.gfile.listdir(parent):
      tf.io.gfile.rmtree(parent)


def _steps(where: Optional[Devices], inputs: Inputs, batch: int
          ) -> Dict[str, int]:
  """fit's steps, where several replicas repeat their shares
  (dataset.Shard.distributed); otherwise each pass ends an epoch."""
  if not (where and where.replica.several):
    return {}
  return {'steps_per_epoch': max(1, math.ceil(inputs.train_count / batch)),
          'validation_steps': max(1, math.ceil(inputs.validation_count /
                                               batch))}


def _progress(replica: cluster.Replica, stage: str, stages: int
             ) -> List[tf.keras.callbacks.Callback]:
  """The epochs' lines, once: the chief's (the metrics are the same on every
  replica, reduced across them)."""
  if not replica.is_chief:
    return []
  return [EpochProgress(stage if stages > 1 else '')]


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
  batch = where.global_batch(config.batch_size) if where else config.batch_size
  steps_per_epoch = max(1, math.ceil(inputs.train_count / batch))
  weights = class_weights(config, inputs.class_counts)
  history: History = {}
  epoch = 0
  skipped = None  # the last finished stage whose weights are not loaded yet
  stages = model.training_stages()
  for stage in stages:
    stage.enter(model)
    name = stage.name
    log = backup.epoch_log(name)
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
                class_weight=weights, **_steps(where, inputs, batch),
                callbacks=[*backup.callbacks(name, log), early_stopping,
                           *_progress(backup.replica, name, len(stages)),
                           *callbacks], verbose=0)
      backup.finish(model, name)
    epochs = log.epochs
    epoch += len(epochs)
    for logs in (epochs[e] for e in sorted(epochs)):
      for key, value in logs.items():
        history.setdefault(key, []).append(value)
  if skipped:
    backup.restore(model, skipped)
  return history


