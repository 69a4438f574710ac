"""TFX artifacts on disk for executor unit tests, as the components leave them.

TFX's own executor tests (e.g. avro_executor_test.py) build their input
artifacts by hand and call `Do` directly; these helpers do the same for the
artifacts this project's components exchange.
"""
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from imgcls.contract import names
from imgcls.imagedata import dataset_facts, tf_examples
from imgcls.trainer import models
from tests import images

CLASS_NAMES = ['zero', 'one', 'two']


def labelled_images(count: int, seed: int = 0) -> List[Tuple[bytes, int]]:
  """(PNG, label) pairs the untrained or trained model can tell apart."""
  labels = [i % len(CLASS_NAMES) for i in range(count)]
  return [(images.encode(images.digit_like(label, seed=seed + i)), label)
          for i, label in enumerate(labels)]


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
        example = tf_examples.make_example(encoded, label, name,
                                           f'{split}/{name}/{n}.png')
        writer.write(example.SerializeToString())
  dataset_facts.write(uri, dataset_facts_of({
      s: {name: sum(1 for _, label in items if class_names[label] == name)
          for name in class_names}
      for s, items in splits.items()}, class_names))
  return artifact


def dataset_facts_of(per_class: Dict[str, Dict[str, int]],
                     class_names: Optional[Sequence[str]] = None
                    ) -> dataset_facts.DatasetFacts:
  """The facts the ExampleGen records for these counts (split -> class ->
  examples), from a folder layout with nothing skipped; the class names
  sorted unless given in label order."""
  examples = {s: sum(c.values()) for s, c in per_class.items()}
  return dataset_facts.DatasetFacts(
      data_root='/data',
      class_names=list(class_names or sorted(per_class[names.TRAIN_SPLIT])),
      train_spans=[], test_span=None, test_source='folder', files=examples,
      examples=examples, examples_per_class=per_class)


def model(uri: str, keras_model=None) -> standard_artifacts.Model:
  """A Model artifact whose Format-Serving holds an exported classifier."""
  artifact = standard_artifacts.Model()
  artifact.uri = uri
  keras_model = keras_model or models.build_model('LenetModel', (28, 28, 1),
                                                  CLASS_NAMES)
  keras_model.save(path_utils.serving_model_dir(uri))
  return artifact


def artifact(cls, uri: str, **int_properties):
  """An artifact of type `cls` at `uri` with integer custom properties."""
  made = cls()
  made.uri = uri
  for name, value in int_properties.items():
    made.set_int_custom_property(name, value)
  return made


def push(tmp_path, base_dir: str, images: int = 6, with_examples: bool = True,
         trained=None, baseline_version: int = 2, blessed: int = 1,
         keep_versions: int = 5) -> standard_artifacts.PushedModel:
  """Runs the versioned Pusher's executor once; returns its PushedModel."""
  from imgcls.components import versioned_pusher
  inputs = {
      'model': [trained or model(str(tmp_path / 'model'))],
      'model_blessing': [artifact(standard_artifacts.ModelBlessing,
                                  str(tmp_path / 'blessing'), blessed=blessed)],
      'infra_blessing': [artifact(standard_artifacts.InfraBlessing,
                                  str(tmp_path / 'infra'), blessed=1)],
      'baseline_model': [artifact(
          standard_artifacts.Model, str(tmp_path / 'baseline'),
          **{names.PROP_HAS_MODEL: 1,
             names.PROP_SERVING_VERSION: baseline_version})],
  }
  if with_examples:
    test_examples = examples(str(tmp_path / 'examples'),
                             {'test': labelled_images(images)})
    test_examples.set_string_custom_property(names.PROP_TRAIN_SPANS, '[3, 4]')
    inputs['examples'] = [test_examples]
  pushed = artifact(standard_artifacts.PushedModel, str(tmp_path / 'pushed'))
  versioned_pusher.Executor().Do(inputs, {'pushed_model': [pushed]}, {
      'push_destination': json.dumps(
          {'filesystem': {'base_directory': base_dir}}),
      versioned_pusher.KEEP_VERSIONS_KEY: keep_versions,
  })
  return pushed
