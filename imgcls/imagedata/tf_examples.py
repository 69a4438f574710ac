"""The tf.Example records the ExampleGen writes and the Trainer and model read.

The feature names are the contract's (imgcls/contract/names.py); this module
holds the TensorFlow side of them: how a record is built and how it is parsed.
"""
import os
from typing import Iterator, List, Optional

import tensorflow as tf

from imgcls.contract import names
from imgcls.imagedata import image_header
from imgcls.imagedata.pixel_statistics import PixelStatistics

TRAINING_FEATURES = {
    names.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    names.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def make_example(image_bytes: bytes, label: int, label_name: str, path: str,
                 header: Optional[image_header.ImageHeader] = None,
                 pixels: Optional[PixelStatistics] = None
                ) -> tf.train.Example:
  """The image as on disk, its label, the facts its header declares, and
  for a sampled image its pixel statistics.

  `header` saves reading the header again when the caller has checked it;
  the facts (names.IMAGE_FACT_KEYS, names.PIXEL_STATISTIC_KEYS) are for data
  validation, not the model.
  """
  header = header or image_header.read_header(image_bytes)

  def _bytes(value: bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  def _int(value: int):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

  features = {
      names.IMAGE_KEY: _bytes(image_bytes),
      names.LABEL_KEY: _int(label),
      names.LABEL_NAME_KEY: _bytes(label_name.encode()),
      names.PATH_KEY: _bytes(path.encode()),
      names.IMAGE_WIDTH_KEY: _int(header.width),
      names.IMAGE_HEIGHT_KEY: _int(header.height),
      names.IMAGE_CHANNELS_KEY: _int(header.channels),
      names.IMAGE_FORMAT_KEY: _bytes(header.format.encode()),
      names.FILE_SIZE_KEY: _int(len(image_bytes)),
  }
  if pixels is not None:
    for key, values in ((names.PIXEL_MEAN_KEY, pixels.mean),
                        (names.PIXEL_STD_KEY, pixels.std)):
      features[key] = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[v.encode() for v in values]))
  return tf.train.Example(features=tf.train.Features(feature=features))


def parse_image_bytes(serialized: tf.Tensor) -> tf.Tensor:
  """A [None] batch of serialized Examples -> their encoded images."""
  features = tf.io.parse_example(
      serialized, {names.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
  return features[names.IMAGE_KEY]


def test_records(examples_uri: str, batch_size: int,
                 limit: Optional[int] = None) -> Iterator[List[bytes]]:
  """Batches of serialized Examples of the test split, in file order."""
  pattern = os.path.join(examples_uri, f'Split-{names.TEST_SPLIT}', '*')
  records = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)),
                                    compression_type='GZIP')
  if limit is not None:
    records = records.take(limit)
  for batch in records.batch(batch_size).as_numpy_iterator():
    yield list(batch)
