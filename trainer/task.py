"""The TFX module functions: `run_fn` (Trainer) and `tuner_fn` (Tuner).

The model type and hyperparameters arrive in `custom_config` (a
TrainingConfig), and a Tuner's best values, when the pipeline tunes, in
`fn_args.hyperparameters`; the label vocabulary and the example counts come
from the ExampleGen's dataset facts (imagedata.dataset_facts), so the
Trainer, the Evaluator and the served model agree on them. The model is saved
through its own `save`, so the export carries the three serving signatures and
the class names.
"""
import json
import logging
import os
import tempfile

import keras_tuner
import tensorflow as tf
from tfx.components.tuner.component import TunerFnResult

from imgcls.contract import names
from imgcls.imagedata import dataset_facts
from imgcls.trainer import dataset, training, tuning
from imgcls.trainer.config import TrainingConfig

# Object stores that TensorFlow's file system cannot write (KFP's launcher
# uploads artifacts after a step ends): a backup there is not possible.
_UNWRITABLE_SCHEMES = ('minio://', 's3://')


def examples_uri(file_pattern: str) -> str:
  """TFX passes `<examples uri>/Split-<name>/*`; the artifact is two up."""
  return os.path.dirname(os.path.dirname(file_pattern))


def training_config(fn_args) -> TrainingConfig:
  """custom_config, with the Tuner's best values when the pipeline tuned."""
  config = TrainingConfig.from_custom_config(fn_args.custom_config)
  if fn_args.hyperparameters:
    values = keras_tuner.HyperParameters.from_config(
        fn_args.hyperparameters).values
    logging.info('training with the tuned hyperparameters %s', values)
    config = config.with_hyperparameters(values)
  return config


def backup_dir(fn_args, config: TrainingConfig) -> str:
  """Where BackupAndRestore keeps an unfinished training's state.

  A retry of the same execution, by LocalDagRunner on a re-run or by KFP on a
  failed step, gets new output URIs but the same input examples and
  settings; the directory is named after those, under config.backup_root.
  """
  key = training.backup_key(examples_uri(fn_args.train_files[0]),
                            fn_args.custom_config, fn_args.hyperparameters)
  root = config.backup_root
  if not root or root.startswith(_UNWRITABLE_SCHEMES):
    logging.warning('no writable backup root (%r): an interrupted Trainer '
                    'will start again from its first epoch', root)
    root = os.path.join(tempfile.gettempdir(), 'imgcls-trainer-backup')
  return os.path.join(root, key)


def _inputs(fn_args, config: TrainingConfig, where: training.Devices):
  facts = dataset_facts.read(examples_uri(fn_args.train_files[0]))
  return facts, dataset.examples_inputs(
      fn_args.train_files, fn_args.eval_files, facts, config,
      where.global_batch(config.batch_size), where.shard)


def run_fn(fn_args) -> None:
  """Trains and exports; as one of several replicas (TF_CONFIG), the chief
  alone keeps the export, the history, the TensorBoard logs and the backup.
  """
  where = training.devices()  # first: see training.devices
  config = training_config(fn_args)
  facts, inputs = _inputs(fn_args, config, where)
  model = training.build_model(config, facts.class_names, where)
  chief = where.replica.is_chief
  backup = training.Backup(backup_dir(fn_args, config), where.replica)
  board = [tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)]
  history = training.fit(model, config, inputs, backup,
                         board if chief else [], where)
  training.save_on_every_replica(where.replica, fn_args.serving_model_dir,
                                 model.save)
  if chief:
    history_path = os.path.join(fn_args.model_run_dir, names.HISTORY_FILE)
    with tf.io.gfile.GFile(history_path, 'w') as f:
      json.dump(history, f)
  backup.remove()
  training.after_export(where, fn_args.serving_model_dir)


def tuner_fn(fn_args) -> TunerFnResult:
  """A random search over the model class's search_space(), each trial
  trained as run_fn trains (tfx/components/tuner/executor.py calls
  `tuner.search(**fit_kwargs)` and writes the best values)."""
  where = training.devices()
  config = TrainingConfig.from_custom_config(fn_args.custom_config)
  facts, inputs = _inputs(fn_args, config, where)
  tuner = tuning.ClassifierTuner(
      config, facts.class_names, where,
      max_trials=int(fn_args.custom_config[names.TUNE_TRIALS_KEY]),
      directory=fn_args.working_dir)
  return TunerFnResult(tuner=tuner, fit_kwargs={'inputs': inputs})
