"""The training loop shared by `imgcls train` and the TFX Trainer's run_fn."""
import contextlib
import logging
from typing import Dict, List, Optional, Sequence

import tensorflow as tf

from trainer import models
from trainer.config import TrainingConfig


def distribution_strategy() -> tf.distribute.Strategy:
  """MirroredStrategy over the visible GPUs; the default strategy without."""
  gpus = tf.config.list_logical_devices('GPU')
  if gpus:
    logging.info('training on %d GPU(s) with MirroredStrategy: %s',
                    len(gpus), [g.name for g in gpus])
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


def build_model(config: TrainingConfig, class_names: Sequence[str],
                strategy: Optional[tf.distribute.Strategy] = None):
  scope = strategy.scope() if strategy else contextlib.nullcontext()
  with scope:
    return models.build_model(config.model_type, config.input_shape,
                              class_names, **config.model_options)


def fit(model: models.ImageClassifierModel, config: TrainingConfig,
        train_ds: tf.data.Dataset, eval_ds: tf.data.Dataset,
        callbacks: Sequence[tf.keras.callbacks.Callback] = (),
        strategy: Optional[tf.distribute.Strategy] = None
       ) -> Dict[str, List[float]]:
  """Trains each of the model's stages for `config.epochs` epochs.

  Early stopping restores the best weights of each stage. Returns the
  per-epoch history of all stages, in order.
  """
  history: Dict[str, List[float]] = {}
  epoch = 0
  for stage, learning_rate_scale in model.training_stages():
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
      model.enter_stage(stage)
      model.compile(
          optimizer=tf.keras.optimizers.Adam(config.learning_rate *
                                             learning_rate_scale),
          loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
          metrics=[tf.keras.metrics.SparseCategoricalAccuracy('accuracy')])
    early_stopping = tf.keras.callbacks.EarlyStopping(
        monitor='val_loss', patience=config.early_stopping_patience,
        restore_best_weights=True)
    result = model.fit(
        train_ds, validation_data=eval_ds, initial_epoch=epoch,
        epochs=epoch + config.epochs,
        callbacks=[early_stopping, *callbacks], verbose=2)
    epoch += len(result.epoch)
    for key, values in result.history.items():
      history.setdefault(key, []).extend(float(v) for v in values)
  return history
