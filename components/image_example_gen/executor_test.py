"""Tests for the ImageExampleGen executor, run directly as TFX's
avro_executor_test.py runs its executor: class folders in, splits out, with
the image facts each record carries, and every file accounted for when
threads read them."""
import collections
import json
import os
import struct
import zlib

import numpy as np
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
from imgcls.imagedata import dataset_facts, pixel_statistics
from tests import images


def _run(input_base, tmp_path, options=ExampleGenOptions()):
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  executor.Executor().Do(
      {}, {standard_component_specs.EXAMPLES_KEY: [examples]}, {
          standard_component_specs.INPUT_BASE_KEY: input_base,
          standard_component_specs.CUSTOM_CONFIG_KEY:
              proto_utils.proto_to_json(options.to_custom_config()),
      })
  return examples


def _records(examples, split):
  pattern = os.path.join(artifact_utils.get_split_uri([examples], split), '*')
  dataset = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)),
                                    compression_type='GZIP')
  return [tf.train.Example.FromString(r.numpy()) for r in dataset]


def _value(example, key):
  feature = example.features.feature[key]
  return (feature.int64_list.value or feature.bytes_list.value)[0]


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


def test_examples_carry_the_facts_of_their_headers(tmp_path):
  root = tmp_path / 'data'
  for fmt in images.FORMATS:  # 40 files per split: several reader batches
    images.write_class_folders(str(root / 'train'), {'a': 5, 'b': 5}, fmt=fmt)
    images.write_class_folders(str(root / 'test'), {'a': 2, 'b': 2}, fmt=fmt,
                               seed=1)
  (root / 'train' / 'a' / 'wide.png').write_bytes(
      images.encode(images.digit_like(0, size=(12, 50)).repeat(3).reshape(
          12, 50, 3)))
  examples = _run(str(root), tmp_path)
  train = _records(examples, names.TRAIN_SPLIT)
  assert len(train) == 41 and len(_records(examples, names.TEST_SPLIT)) == 16
  formats = set()
  for example in train:
    data = _value(example, names.IMAGE_KEY)
    decoded = tf.io.decode_image(data, expand_animations=False).shape
    assert (_value(example, names.IMAGE_HEIGHT_KEY),
            _value(example, names.IMAGE_WIDTH_KEY),
            _value(example, names.IMAGE_CHANNELS_KEY)) == tuple(decoded)
    assert _value(example, names.FILE_SIZE_KEY) == len(data)
    formats.add(_value(example, names.IMAGE_FORMAT_KEY).decode())
  assert formats == set(images.FORMATS)
  wide = [e for e in train
          if _value(e, names.PATH_KEY) == b'train/a/wide.png']
  assert _value(wide[0], names.IMAGE_WIDTH_KEY) == 50
  assert _value(wide[0], names.IMAGE_CHANNELS_KEY) == 3


def test_threaded_reading_keeps_every_file_and_every_skip(tmp_path):
  """Photo-sized files (over executor._THREADED_FILE_BYTES) go to reader
  threads; every result must still land with its own file."""
  root = tmp_path / 'data'
  rng = np.random.default_rng(0)
  for label, name in enumerate('ab'):
    for n in range(60):
      noise = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
      noise[:, :, 0] = label * 255  # the label is in the pixels
      path = root / 'train' / name / f'0-{n}.png'
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(images.encode(noise))
  assert os.path.getsize(path) > executor._THREADED_FILE_BYTES
  images.write_class_folders(str(root / 'test'), {'a': 3, 'b': 3}, seed=1)
  for n in range(20, 60, 13):  # bad files spread over the reader batches
    (root / 'train' / 'b' / f'0-{n}.png').write_bytes(b'garbage')
  examples = _run(str(root), tmp_path)
  facts = dataset_facts.read(examples.uri)
  assert [p for p, _ in facts.skipped] == sorted(
      f'train/b/0-{n}.png' for n in range(20, 60, 13))
  records = _records(examples, names.TRAIN_SPLIT)
  paths = [_value(e, names.PATH_KEY).decode() for e in records]
  assert len(paths) == 120 - 4 == len(set(paths))
  for example in records:
    red = tf.io.decode_png(_value(example, names.IMAGE_KEY))[0, 0, 0]
    assert int(red) == 255 * _value(example, names.LABEL_KEY)


def _texts(example, key):
  return [v.decode() for v in example.features.feature[key].bytes_list.value]


def test_a_small_split_carries_the_pixel_statistics_of_every_image(
    data, tmp_path):
  examples = _run(data, tmp_path)
  for split in (names.TRAIN_SPLIT, names.TEST_SPLIT):
    for example in _records(examples, split):
      found = pixel_statistics.of_image(_value(example, names.IMAGE_KEY),
                                        'PNG')
      assert _texts(example, names.PIXEL_MEAN_KEY) == found.mean
      assert _texts(example, names.PIXEL_STD_KEY) == found.std
      assert len(found.mean) == len(found.std) == 3


def test_a_large_split_carries_them_for_as_many_images_of_each_class(
    tmp_path, monkeypatch):
  monkeypatch.setattr(pixel_statistics, 'MIN_SAMPLE', 12)
  monkeypatch.setattr(pixel_statistics, 'MIN_PER_CLASS', 2)
  monkeypatch.setattr(executor, '_CHUNK', 10)  # spread over shards
  images.write_class_folders(str(tmp_path / 'data' / 'train'),
                             {'cat': 40, 'dog': 8, 'owl': 10})
  images.write_class_folders(str(tmp_path / 'data' / 'test'),
                             {'cat': 1, 'dog': 1, 'owl': 1}, seed=1)
  examples = _run(str(tmp_path / 'data'), tmp_path)
  train = _records(examples, names.TRAIN_SPLIT)
  sampled = collections.Counter(
      _value(r, names.LABEL_NAME_KEY).decode() for r in train
      if names.PIXEL_MEAN_KEY in r.features.feature)
  # A sample of 12 shared equally by the classes, not in their shares.
  assert sampled == {'cat': 4, 'dog': 4, 'owl': 4}

def _png_chunk(kind: bytes, body: bytes) -> bytes:
  return (struct.pack('>I', len(body)) + kind + body +
          struct.pack('>I', zlib.crc32(kind + body)))


def test_a_sampled_png_that_does_not_decode_is_skipped_and_listed(
    data, tmp_path):
  """Its chunks' CRCs hold, which is all an unsampled PNG is checked for."""
  bad = (images.png_header(4, 4, colour_type=0) +
         _png_chunk(b'IDAT', b'not zlib data') + _png_chunk(b'IEND', b''))
  with open(os.path.join(data, 'train', 'cat', 'bad.png'), 'wb') as f:
    f.write(bad)
  examples = _run(data, tmp_path, ExampleGenOptions(max_bad_fraction=0.5))
  assert len(_records(examples, names.TRAIN_SPLIT)) == 7
  (skipped,) = dataset_facts.read(examples.uri).skipped
  assert skipped[0] == 'train/cat/bad.png'
  assert skipped[1].startswith('not a readable image: ')
