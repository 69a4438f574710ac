"""The ImageExampleGen's executor on real files: the image facts it records,
and every file accounted for when threads read them."""
import os

import numpy as np
import tensorflow as tf
from tfx.types import (
  artifact_utils,
  standard_artifacts,
  standard_component_specs,
)

from imgcls.components.image_example_gen import executor
from imgcls.contract import names
from imgcls.imagedata import dataset_facts
from tests import images


def _run(data_root, out):
  examples = standard_artifacts.Examples()
  examples.uri = out
  executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]},
                         {standard_component_specs.INPUT_BASE_KEY: data_root})
  return examples


def _records(examples, split):
  pattern = os.path.join(artifact_utils.get_split_uri([examples], split), '*')
  return [tf.train.Example.FromString(r.numpy()) for r in
          tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)),
                                  compression_type='GZIP')]


def _value(example, key):
  feature = example.features.feature[key]
  return (feature.int64_list.value or feature.bytes_list.value)[0]


def test_examples_carry_the_facts_of_their_headers(tmp_path):
  root = tmp_path / 'data'
  for fmt in images.FORMATS:  # 40 files per split: several reader batches
    images.write_class_folders(str(root / 'train'), {'a': 5, 'b': 5}, fmt=fmt)
    images.write_class_folders(str(root / 'test'), {'a': 2, 'b': 2}, fmt=fmt,
                               seed=1)
  (root / 'train' / 'a' / 'wide.png').write_bytes(
      images.encode(images.digit_like(0, size=(12, 50)).repeat(3).reshape(
          12, 50, 3)))
  examples = _run(str(root), str(tmp_path / 'examples'))
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
  examples = _run(str(root), str(tmp_path / 'examples'))
  facts = dataset_facts.read(examples.uri)
  assert [p for p, _ in facts.skipped] == sorted(
      f'train/b/0-{n}.png' for n in range(20, 60, 13))
  records = _records(examples, names.TRAIN_SPLIT)
  paths = [_value(e, names.PATH_KEY).decode() for e in records]
  assert len(paths) == 120 - 4 == len(set(paths))
  for example in records:
    red = tf.io.decode_png(_value(example, names.IMAGE_KEY))[0, 0, 0]
    assert int(red) == 255 * _value(example, names.LABEL_KEY)
