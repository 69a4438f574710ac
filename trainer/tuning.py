"""Hyperparameter search with KerasTuner, through the project's own loop.

KerasTuner's `Tuner` checks that a model is a Keras 3 `keras.Model`, and the
project's models are tf_keras ones (keras_tuner/src/engine/tuner.py,
_try_build). So the search subclasses `BaseTuner` and overrides `run_trial`,
KerasTuner's documented way to tune a custom training loop: each trial
builds the model class with the trial's values and trains it exactly as the
Trainer does (augmentation, schedule, class weights), which makes the
objective the one the Trainer will reach.
"""
import tempfile
from typing import Sequence

import keras_tuner
from keras_tuner.engine import base_tuner

from imgcls.contract import names
from imgcls.trainer import models, training
from imgcls.trainer.config import TrainingConfig
from imgcls.trainer.dataset import Inputs


class ClassifierTuner(base_tuner.BaseTuner):
  """Random search over the model class's `search_space()`."""

  def __init__(self, config: TrainingConfig, class_names: Sequence[str],
               where: training.Devices, max_trials: int, directory: str):
    super().__init__(
        oracle=keras_tuner.oracles.RandomSearchOracle(
            objective=keras_tuner.Objective(names.TUNER_OBJECTIVE, 'max'),
            max_trials=max_trials,
            hyperparameters=models.model_class(
                config.model_type).search_space(),
            seed=0),
        directory=directory, project_name='imgcls', overwrite=True)
    self._config = config
    self._class_names = list(class_names)
    self._where = where

  def run_trial(self, trial, inputs: Inputs):
    config = self._config.with_hyperparameters(trial.hyperparameters.values)
    model = training.build_model(config, self._class_names, self._where)
    # A trial is short and is not resumed: its backup is thrown away.
    with tempfile.TemporaryDirectory() as backup_dir:
      history = training.fit(model, config, inputs,
                             training.Backup(backup_dir), where=self._where)
    return {names.TUNER_OBJECTIVE: max(history[names.TUNER_OBJECTIVE])}
