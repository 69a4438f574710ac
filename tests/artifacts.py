"""TFX artifacts on disk for executor unit tests, as the components leave them.

TFX's own executor tests (e.g. avro_executor_test.py) build their input
artifacts by hand and call `Do` directly; these helpers do the same for the
artifacts this project's components exchange.
"""
import json
import os
from typing import Dict, List, Sequence, Tuple

import tensorflow as tf
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from contract import names
from imagedata import tf_examples
from tests import images
from trainer import models

CLASS_NAMES = ['zero', 'one', 'two']


def labelled_images(count: int, seed: int = 0) -> List[Tuple[bytes, int]]:
  """(PNG, label) pairs the untrained or trained model can tell apart."""
  return [(images.encode(images.digit_like(i % len(CLASS_NAMES), seed=seed + i)),
           i % len(CLASS_NAMES)) for i in range(count)]


def examples(uri: str, splits: Dict[str, List[Tuple[bytes, int]]],
             class_names: Sequence[str] = CLASS_NAMES
            ) -> standard_artifacts.Examples:
  """An Examples artifact with gzipped TFRecords and dataset_info.json."""
  artifact = standard_artifacts.Examples()
  artifact.uri = uri
  artifact.split_names = artifact_utils.encode_split_names(list(splits))
  for split, items in splits.items():
    split_dir = os.path.join(uri, f'Split-{split}')
    os.makedirs(split_dir, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type='GZIP')
    with tf.io.TFRecordWriter(os.path.join(split_dir, 'data.gz'),
                              options) as writer:
      for n, (encoded, label) in enumerate(items):
        name = class_names[label]
        writer.write(tf_examples.make_example(
            encoded, label, name, f'{split}/{name}/{n}.png').SerializeToString())
  with open(os.path.join(uri, names.DATASET_INFO_FILE), 'w') as f:
    json.dump({names.DATASET_INFO_CLASS_NAMES: list(class_names),
               names.DATASET_INFO_EXAMPLES: {
                   s: len(items) for s, items in splits.items()}}, f)
  return artifact


def model(uri: str, keras_model=None) -> standard_artifacts.Model:
  """A Model artifact whose Format-Serving holds an exported classifier."""
  artifact = standard_artifacts.Model()
  artifact.uri = uri
  keras_model = keras_model or models.build_model('LenetModel', (28, 28, 1),
                                                  CLASS_NAMES)
  keras_model.save(path_utils.serving_model_dir(uri))
  return artifact
