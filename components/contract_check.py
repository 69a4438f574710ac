"""ContractCheck: the exported model answers as clients will call it.

Before anything is pushed, the trained SavedModel is loaded the way TF
Serving loads it and called through `serving_default`, `serving_bytes` and
`serving_examples` with real encoded images from the test split. A model that
fails here would load in TF Serving and then give clients wrong or malformed
answers, so it is not pushed. The result is an InfraBlessing, which the
Pusher already knows how to honour.
"""
import logging
import os
from typing import List, Sequence

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples
from tfx.types.standard_artifacts import InfraBlessing
from tfx.types.standard_artifacts import Model
from tfx.utils import path_utils

from components import example_format
from components.image_example_gen import executor as example_gen_executor
from trainer import models
from trainer import saved_model

REASON = 'reason'
# serving_default gets pixels decoded by a client library, not by TF; lossy
# formats may round differently, so a rare disagreement is tolerated there.
_MIN_PIXEL_AGREEMENT = 0.95


class ContractError(Exception):
  pass


def check_saved_model(model_dir: str, serialized_examples: Sequence[bytes],
                      class_names: Sequence[str]) -> None:
  """Raises ContractError saying what is wrong; returns if all is well."""
  try:
    model = saved_model.SavedClassifier(model_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise ContractError(f'cannot load {model_dir}: {e}') from e
  missing = {models.SERVING_DEFAULT, models.SERVING_BYTES,
             models.SERVING_EXAMPLES} - set(model.signatures)
  if missing:
    raise ContractError(f'missing signatures {sorted(missing)}')
  if list(model.class_names) != list(class_names):
    raise ContractError(f'model classes {model.class_names} differ from the '
                        f'dataset vocabulary {list(class_names)}')
  encoded = list(example_format.parse_image_bytes(
      tf.constant(list(serialized_examples))).numpy())
  answers = {
      models.SERVING_EXAMPLES: model.predict_examples(serialized_examples),
      models.SERVING_BYTES: model.predict_bytes(encoded),
  }
  for name, outputs in answers.items():
    _check_outputs(name, outputs, len(encoded), class_names)
  examples_ids = answers[models.SERVING_EXAMPLES]['class_id']
  if not np.array_equal(examples_ids, answers[models.SERVING_BYTES]['class_id']):
    raise ContractError('serving_examples and serving_bytes disagree on the '
                        'same images')
  by_pixels = saved_model.predict_pixels_by_size(model, encoded)
  expected = [class_names[i] for i in examples_ids]
  agreement = np.mean([a == b for a, b in zip(by_pixels, expected)])
  if agreement < _MIN_PIXEL_AGREEMENT:
    raise ContractError(f'serving_default agrees with serving_bytes on only '
                        f'{agreement:.0%} of the images')


def _check_outputs(signature: str, outputs, count: int,
                   class_names: Sequence[str]) -> None:
  expected = {'logits': ((count, len(class_names)), np.floating),
              'probabilities': ((count, len(class_names)), np.floating),
              'class_id': ((count,), np.integer),
              'class_name': ((count,), np.object_)}
  if set(outputs) != set(expected):
    raise ContractError(f'{signature}: outputs {sorted(outputs)}, expected '
                        f'{sorted(expected)}')
  for key, (shape, kind) in expected.items():
    value = outputs[key]
    if value.shape != shape or not np.issubdtype(value.dtype, kind):
      raise ContractError(f'{signature}: {key} has shape {value.shape} and '
                          f'dtype {value.dtype}, expected {shape} {kind}')
  sums = outputs['probabilities'].sum(axis=1)
  if not np.allclose(sums, 1, atol=1e-3):
    raise ContractError(f'{signature}: probabilities sum to {sums.min():.4f}.. '
                        f'{sums.max():.4f}, not 1')
  names = [n.decode() for n in outputs['class_name']]
  if names != [class_names[i] for i in outputs['class_id']]:
    raise ContractError(f'{signature}: class_name does not match class_id')


def _test_records(examples: Examples, count: int) -> List[bytes]:
  split_uri = artifact_utils.get_split_uri([examples], 'test')
  files = tf.io.gfile.glob(os.path.join(split_uri, '*'))
  records = tf.data.TFRecordDataset(files, compression_type='GZIP')
  return [r.numpy() for r in records.take(count)]


@component
def ContractCheck(  # pylint: disable=invalid-name  (TFX component naming)
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    infra_blessing: OutputArtifact[InfraBlessing],
    sample_size: Parameter[int] = 32) -> None:
  """Blesses the model (InfraBlessing `blessed` = 1) if it keeps the contract."""
  model_dir = path_utils.serving_model_path(model.uri)
  class_names = example_gen_executor.read_dataset_info(
      examples.uri)['class_names']
  try:
    check_saved_model(model_dir, _test_records(examples, sample_size),
                      class_names)
    reason = 'passed'
  except ContractError as e:
    reason = str(e)
    logging.warning('contract check FAILED, nothing will be pushed: %s', e)
  infra_blessing.set_int_custom_property('blessed', int(reason == 'passed'))
  infra_blessing.set_string_custom_property(REASON, reason)
