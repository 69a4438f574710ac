"""The tf.Example contract between the ExampleGen, the Trainer and the model.

The ExampleGen writes these features; the Trainer's input pipeline and the
model's `serving_examples` signature read them. Keep all three in step here.
"""
import tensorflow as tf

IMAGE_KEY = 'image'  # the encoded file, bytes exactly as on disk
LABEL_KEY = 'label'  # int64 index into the sorted class names
LABEL_NAME_KEY = 'label_name'
PATH_KEY = 'path'  # relative to the data root, for reports and debugging

TRAINING_FEATURES = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def make_example(image_bytes: bytes, label: int, label_name: str,
                 path: str) -> tf.train.Example:

  def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE_KEY: _bytes(image_bytes),
      LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
      LABEL_NAME_KEY: _bytes(label_name.encode()),
      PATH_KEY: _bytes(path.encode()),
  }))


def parse_image_bytes(serialized: tf.Tensor) -> tf.Tensor:
  """A [None] batch of serialized Examples -> their encoded images."""
  features = tf.io.parse_example(
      serialized, {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
  return features[IMAGE_KEY]
