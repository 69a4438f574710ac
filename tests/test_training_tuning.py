"""`imgcls run --tune`: TFX's Tuner searches the model class's own search
space, and the Trainer trains with the best values it wrote. The model is a
user's subclass declaring its own hyperparameters (real LocalDagRunner)."""
import json
import os

import keras_tuner
import pytest
import tensorflow as tf

from imgcls import cli
from imgcls.contract import names
from imgcls.pipeline import results
from imgcls.report import writer
from imgcls.trainer.models import ImageClassifierModel
from tests import images

pytestmark = pytest.mark.e2e

UNITS = [3, 5, 7]


class HiddenWidthModel(ImageClassifierModel):
  """A user's subclass: one hidden layer whose width the Tuner picks."""

  def create_model_io(self, input_shape, num_classes, units=4):
    inputs = tf.keras.Input(shape=input_shape)
    x = tf.keras.layers.Flatten()(tf.keras.layers.Rescaling(1 / 255)(inputs))
    x = tf.keras.layers.Dense(int(units), activation='relu', name='hidden')(x)
    return inputs, tf.keras.layers.Dense(num_classes)(x)

  @classmethod
  def search_space(cls):
    hp = keras_tuner.HyperParameters()
    hp.Choice('units', UNITS)
    hp.Fixed(names.LEARNING_RATE_HYPERPARAMETER, 0.01)
    return hp


def test_tune_writes_best_hyperparameters_that_the_trainer_uses(tmp_path):
  images.write_class_folders(str(tmp_path / 'data' / 'train'),
                             {'a': 30, 'b': 30})
  images.write_class_folders(str(tmp_path / 'data' / 'test'),
                             {'a': 8, 'b': 8}, seed=1)
  assert cli.main([
      'run', '--data-root', str(tmp_path / 'data'), '--serving-dir',
      str(tmp_path / 'serving'), '--pipeline-root', str(tmp_path / 'pipeline'),
      '--model-type', f'{__name__}.HiddenWidthModel', '--epochs', '1',
      '--batch-size', '16', '--min-accuracy', '0', '--tune',
      '--tune-trials', '2', '--accept-anomalies'
  ]) == 0
  result = results.load_run(str(tmp_path / 'pipeline'))
  best = os.path.join(result.uri('best_hyperparameters'),
                      names.BEST_HYPERPARAMETERS_FILE)
  with open(best) as f:
    values = json.load(f)['values']
  assert set(values) == {'units', 'learning_rate'}
  assert values['units'] in UNITS
  assert result.hyperparameters == values
  with open(os.path.join(result.uri('tuner_results'),
                         'tuner_results.json')) as f:
    assert len(json.load(f)) == 2  # two trials, both completed

  # The trained model has the tuned width.
  exported = tf.saved_model.load(
      os.path.join(result.uri('model'), 'Format-Serving'))
  (kernel,) = [v for v in exported.variables
               if 'hidden' in v.name and 'kernel' in v.name]
  assert kernel.shape[-1] == values['units']

  # And the report that `imgcls run` wrote shows the chosen values.
  page = open(os.path.join(
      writer.report_dir(str(tmp_path / 'pipeline'), result.run_id),
      writer.REPORT_FILE)).read()
  assert 'Tuned hyperparameters' in page and f'>{values["units"]}<' in page
