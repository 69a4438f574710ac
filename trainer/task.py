"""The TFX Trainer's module file: `run_fn` trains the configured model class.

The model type and hyperparameters arrive in `custom_config` (a
TrainingConfig); the label vocabulary comes from the ExampleGen's
dataset_info.json, so the Trainer, the Evaluator and the served model agree
on it. The model is saved through its own `save`, so the export carries the
three serving signatures and the class names.
"""
import json
import os

import tensorflow as tf

from contract import names
from imagedata import tf_examples
from trainer import dataset
from trainer import training
from trainer.config import TrainingConfig

def examples_uri(file_pattern: str) -> str:
  """TFX passes `<examples uri>/Split-<name>/*`; the artifact is two up."""
  return os.path.dirname(os.path.dirname(file_pattern))


def run_fn(fn_args) -> None:
  config = TrainingConfig.from_custom_config(fn_args.custom_config)
  class_names = tf_examples.read_dataset_info(
      examples_uri(fn_args.train_files[0]))[names.DATASET_INFO_CLASS_NAMES]
  strategy = training.distribution_strategy()
  batch_size = config.batch_size * strategy.num_replicas_in_sync
  train_ds, eval_ds = (dataset.examples_dataset(
      files, config.input_shape, batch_size, shuffle=shuffle,
      cache_limit_mb=config.cache_limit_mb)
                       for files, shuffle in ((fn_args.train_files, True),
                                              (fn_args.eval_files, False)))
  model = training.build_model(config, class_names, strategy)
  history = training.fit(
      model, config, train_ds, eval_ds,
      [tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)],
      strategy)
  model.save(fn_args.serving_model_dir)
  with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, names.HISTORY_FILE),
                         'w') as f:
    json.dump(history, f)
