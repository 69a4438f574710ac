"""tf.data input pipelines: TFRecords of tf.Examples (TFX) or class folders.

Both end in the same way: decode and resize in parallel with the model's own
preprocessing (trainer.images), cache in memory when the decoded data fits,
shuffle, batch and prefetch, so the model does not wait for data.
"""
from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from contract import names
from imagedata import tf_examples
from imagedata import preprocessing as images

AUTOTUNE = tf.data.AUTOTUNE
_SHUFFLE_BUFFER = 10_000


def expand_file_patterns(patterns: Sequence[str]) -> List[str]:
  """TFX hands run_fn glob patterns, not files."""
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise ValueError(f'no files match {list(patterns)}')
  return files


def examples_dataset(file_patterns: Sequence[str], image_shape, batch_size: int,
                     shuffle: bool, cache_limit_mb: int) -> tf.data.Dataset:
  """Batches of (pixels, label) from gzipped TFRecords of the ExampleGen."""
  records = tf.data.TFRecordDataset(
      expand_file_patterns(file_patterns), compression_type='GZIP',
      num_parallel_reads=AUTOTUNE)
  # Counting records (no parsing) is cheap next to decoding every epoch.
  count = int(records.reduce(0, lambda n, _: n + 1))
  encoded = records.map(_parse_example, num_parallel_calls=AUTOTUNE)
  return _decode_and_batch(encoded, count, image_shape, batch_size, shuffle,
                           cache_limit_mb)


def files_dataset(paths: Sequence[str], labels: Sequence[int], image_shape,
                  batch_size: int, shuffle: bool,
                  cache_limit_mb: int) -> tf.data.Dataset:
  """Batches of (pixels, label) read straight from image files.

  Class folders list their files class by class. To train, the whole list is
  shuffled first, because the shuffle buffer after decoding holds a fraction
  of a large dataset: batches would otherwise hold two or three classes.
  """
  if shuffle:
    order = np.random.default_rng(0).permutation(len(paths))
    paths, labels = [paths[i] for i in order], [labels[i] for i in order]
  encoded = tf.data.Dataset.from_tensor_slices(
      (list(paths), tf.constant(labels, tf.int64)))
  encoded = encoded.map(lambda p, l: (tf.io.read_file(p), l),
                        num_parallel_calls=AUTOTUNE)
  return _decode_and_batch(encoded, len(paths), image_shape, batch_size,
                           shuffle, cache_limit_mb)


def _parse_example(serialized) -> Tuple[tf.Tensor, tf.Tensor]:
  features = tf.io.parse_single_example(serialized,
                                        tf_examples.TRAINING_FEATURES)
  return (features[names.IMAGE_KEY],
          features[names.LABEL_KEY])


def _decode_and_batch(encoded: tf.data.Dataset, count: int, image_shape,
                      batch_size, shuffle, cache_limit_mb) -> tf.data.Dataset:
  decoded = encoded.map(lambda b, l: (images.decode_image(b, image_shape), l),
                        num_parallel_calls=AUTOTUNE,
                        deterministic=not shuffle)
  height, width, channels = image_shape
  if count * height * width * channels * 4 <= cache_limit_mb * 2**20:
    decoded = decoded.cache()
  if shuffle:
    decoded = decoded.shuffle(max(1, min(count, _SHUFFLE_BUFFER)),
                              reshuffle_each_iteration=True)
  return decoded.batch(batch_size).prefetch(AUTOTUNE)
