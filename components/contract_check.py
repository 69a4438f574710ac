"""ContractCheck: the exported model answers as clients will call it.

Before anything is pushed, the trained SavedModel is loaded the way TF
Serving loads it and called through `serving_default`, `serving_bytes` and
`serving_examples` with real encoded images from the test split. A model that
fails here would load in TF Serving and then give clients wrong or malformed
answers, so it is not pushed. The result is an InfraBlessing, which the
Pusher already knows how to honour.
"""
import logging
from typing import Sequence

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import (
  InputArtifact,
  OutputArtifact,
  Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, InfraBlessing, Model
from tfx.utils import path_utils

from imgcls.contract import names, saved_model
from imgcls.contract import outputs as outputs_lib
from imgcls.imagedata import dataset_facts, preprocessing, tf_examples

# serving_default is sent the pixels serving_bytes decodes
# (preprocessing.client_pixels), so the shipped classes agree on every image;
# the margin is for a model class whose two signatures compute differently.
_MIN_PIXEL_AGREEMENT = 0.95


class ContractError(Exception):
  pass


def check_saved_model(model_dir: str, serialized_examples: Sequence[bytes],
                      class_names: Sequence[str]) -> None:
  """Raises ContractError saying what is wrong; returns if all is well."""
  try:
    model = saved_model.load_artifact(model_dir)
  except Exception as e:
    raise ContractError(f'cannot load {model_dir}: {e}') from e
  missing = {names.SERVING_DEFAULT, names.SERVING_BYTES,
             names.SERVING_EXAMPLES} - set(model.signatures)
  if missing:
    raise ContractError(f'missing signatures {sorted(missing)}')
  if list(model.class_names) != list(class_names):
    raise ContractError(f'model classes {model.class_names} differ from the '
                        f'dataset vocabulary {list(class_names)}')
  encoded = list(tf_examples.parse_image_bytes(
      tf.constant(list(serialized_examples))).numpy())
  answers = {
      names.SERVING_EXAMPLES: model.predict_examples(serialized_examples),
      names.SERVING_BYTES: model.predict_bytes(encoded),
  }
  for name, outputs in answers.items():
    _check_outputs(name, outputs, len(encoded), class_names)
  examples_ids = answers[names.SERVING_EXAMPLES][names.CLASS_ID_OUTPUT]
  bytes_ids = answers[names.SERVING_BYTES][names.CLASS_ID_OUTPUT]
  if not np.array_equal(examples_ids, bytes_ids):
    raise ContractError('serving_examples and serving_bytes disagree on the '
                        'same images')
  by_pixels = [n.decode() for n in model.predict_pixels(
      preprocessing.client_pixels(encoded, model.pixel_shape))[
          names.CLASS_NAME_OUTPUT]]
  expected = [class_names[i] for i in examples_ids]
  agreement = np.mean([a == b for a, b in zip(by_pixels, expected)])
  if agreement < _MIN_PIXEL_AGREEMENT:
    raise ContractError(f'serving_default agrees with serving_bytes on only '
                        f'{agreement:.0%} of the images')


def _check_outputs(signature: str, outputs, count: int,
                   class_names: Sequence[str]) -> None:
  expected = {names.LOGITS_OUTPUT: ((count, len(class_names)), np.floating),
              names.PROBABILITIES_OUTPUT: ((count, len(class_names)),
                                           np.floating),
              names.CLASS_ID_OUTPUT: ((count,), np.integer),
              names.CLASS_NAME_OUTPUT: ((count,), np.object_)}
  if set(outputs) != set(expected):
    raise ContractError(f'{signature}: outputs {sorted(outputs)}, expected '
                        f'{sorted(expected)}')
  for key, (shape, kind) in expected.items():
    value = outputs[key]
    if value.shape != shape or not np.issubdtype(value.dtype, kind):
      raise ContractError(f'{signature}: {key} has shape {value.shape} and '
                          f'dtype {value.dtype}, expected {shape} {kind}')
  sums = outputs[names.PROBABILITIES_OUTPUT].sum(axis=1)
  if not np.allclose(sums, 1, atol=1e-3):
    raise ContractError(f'{signature}: probabilities sum to {sums.min():.4f}.. '
                        f'{sums.max():.4f}, not 1')
  problems = outputs_lib.class_problems(
      outputs[names.CLASS_ID_OUTPUT], outputs[names.CLASS_NAME_OUTPUT],
      len(class_names), class_names)
  if problems:
    raise ContractError(f'{signature}: {problems[0]}')


@component
def ContractCheck(  # TFX component naming
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    infra_blessing: OutputArtifact[InfraBlessing],
    sample_size: Parameter[int]) -> None:
  """Blesses the model (InfraBlessing `blessed` = 1) if it keeps the
  contract."""
  model_dir = path_utils.serving_model_path(model.uri)
  class_names = dataset_facts.read(examples.uri).class_names
  try:
    check_saved_model(model_dir, next(tf_examples.test_records(
        examples.uri, sample_size, sample_size)),
                      class_names)
    reason = names.REASON_PASSED
  except ContractError as e:
    reason = str(e)
    logging.warning('contract check FAILED, nothing will be pushed: %s', e)
  infra_blessing.set_int_custom_property(names.PROP_BLESSED,
                                        int(reason == names.REASON_PASSED))
  infra_blessing.set_string_custom_property(names.PROP_REASON, reason)
