"""Tests for the ImageExampleGen executor, run directly as TFX's
avro_executor_test.py runs its executor: class folders in, splits out."""
import json
import os

import pytest
import tensorflow as tf
from tfx.types import (
  artifact_utils,
  standard_artifacts,
  standard_component_specs,
)
from tfx.utils import proto_utils

from imgcls.components.image_example_gen import executor
from imgcls.components.image_example_gen.options import ExampleGenOptions
from imgcls.contract import names
from imgcls.contract.errors import UserError
from imgcls.imagedata import dataset_facts
from tests import images


def _run(input_base, tmp_path, options=ExampleGenOptions()):
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, {
      standard_component_specs.INPUT_BASE_KEY: input_base,
      standard_component_specs.CUSTOM_CONFIG_KEY:
          proto_utils.proto_to_json(options.to_custom_config()),
  })
  return examples


def _records(examples, split):
  pattern = os.path.join(artifact_utils.get_split_uri([examples], split), '*')
  dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern),
                                    compression_type='GZIP')
  return [tf.train.Example.FromString(r.numpy()) for r in dataset]


@pytest.fixture
def data(tmp_path):
  images.write_class_folders(str(tmp_path / 'data' / 'train'),
                             {'cat': 4, 'dog': 3})
  images.write_class_folders(str(tmp_path / 'data' / 'test'),
                             {'cat': 2, 'dog': 2}, seed=1)
  return str(tmp_path / 'data')


def test_writes_both_splits_with_labels_from_sorted_class_names(data,
                                                                 tmp_path):
  examples = _run(data, tmp_path)
  assert artifact_utils.decode_split_names(examples.split_names) == [
      names.TRAIN_SPLIT, names.TEST_SPLIT]
  train = _records(examples, names.TRAIN_SPLIT)
  assert len(train) == 7 and len(_records(examples, names.TEST_SPLIT)) == 4
  for example in train:
    feature = example.features.feature
    label = feature[names.LABEL_KEY].int64_list.value[0]
    name = feature[names.LABEL_NAME_KEY].bytes_list.value[0].decode()
    assert ['cat', 'dog'][label] == name
    assert feature[names.PATH_KEY].bytes_list.value[0].decode().startswith(
        f'train/{name}/')


def test_records_the_vocabulary_beside_the_splits_not_on_the_artifact(
    data, tmp_path):
  examples = _run(data, tmp_path)
  facts = dataset_facts.read(examples.uri)
  assert facts.class_names == ['cat', 'dog']
  assert facts.examples == {'train': 7, 'test': 4}
  assert not examples.has_custom_property('class_names')
  assert not os.path.exists(os.path.join(examples.uri, '_work'))


def test_corrupt_files_are_skipped_and_listed(data, tmp_path):
  with open(os.path.join(data, 'train', 'cat', 'broken.png'), 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n not really')
  examples = _run(data, tmp_path, ExampleGenOptions(max_bad_fraction=0.5))
  assert len(_records(examples, names.TRAIN_SPLIT)) == 7
  assert examples.get_int_custom_property(names.PROP_SKIPPED_FILES) == 1


def test_too_many_bad_files_stop_the_run_naming_the_fraction(data, tmp_path):
  for n in range(3):
    with open(os.path.join(data, 'train', 'dog', f'bad{n}.png'), 'wb') as f:
      f.write(b'not an image')
  with pytest.raises(UserError, match='bad'):
    _run(data, tmp_path, ExampleGenOptions(max_bad_fraction=0.05))


def test_the_artifacts_properties_do_not_grow_with_the_class_count():
  """They ride in every later step's executor input, one argv element that
  Linux caps at 128 KiB (MAX_ARG_STRLEN): 5,000 long class names must stay in
  the facts file."""
  classes = [f'a-fairly-long-class-name-{i:05d}' for i in range(5000)]
  facts = dataset_facts.DatasetFacts(
      data_root='/data', class_names=classes, train_spans=[1, 2],
      test_span=2, test_source='folder', files={'train': 5000, 'test': 5000},
      examples={'train': 5000, 'test': 5000},
      examples_per_class={'train': dict.fromkeys(classes, 1),
                          'test': dict.fromkeys(classes, 1)})
  examples = standard_artifacts.Examples()
  executor._record_on_artifact(examples, facts)
  properties = json.dumps({k: str(v) for k, v in
                           examples.mlmd_artifact.custom_properties.items()})
  assert len(properties) < 1024
