"""tf.data input pipelines: TFRecords of tf.Examples (TFX) or class folders.

Both end in the same way: decode and resize in parallel with the model's own
preprocessing (imagedata.preprocessing), cache the decoded images as uint8
when they fit, shuffle, batch and prefetch, so the model does not wait for
data. The example counts come from what the ExampleGen or the class-folder
listing already recorded: no pass over the data before training.
"""
import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from imgcls.contract import names
from imgcls.imagedata import dataset_facts, tf_examples
from imgcls.imagedata import preprocessing as images

AUTOTUNE = tf.data.AUTOTUNE
_SHUFFLE_BUFFER = 10_000
# Held-out examples are those whose path hashes below fraction * buckets.
_HOLDOUT_BUCKETS = 1000
_RECORD_FEATURES = {
    **tf_examples.TRAINING_FEATURES,
    names.PATH_KEY: tf.io.FixedLenFeature([], tf.string),
}


@dataclasses.dataclass
class Inputs:
  """What a fit needs: batches, and the counts recorded before training."""
  train: tf.data.Dataset
  validation: tf.data.Dataset
  train_count: int  # approximate when part of the training split is held out
  class_counts: List[int]  # training examples per label, in label order
  # Approximate when held out; what several replicas plan their steps by.
  validation_count: int = 0


@dataclasses.dataclass(frozen=True)
class Shard:
  """A replica's share of the examples: every `count`-th, from `index`.

  Taken from the records in their order on disk, before anything is
  decoded: each replica decodes its own examples alone, and the shares are
  disjoint whatever the number of files (tf.distribute's FILE sharding
  needs a file per replica; its DATA sharding cuts the final batches, so
  every replica would decode every image, in the same order on all).
  """
  count: int = 1
  index: int = 0

  def take(self, examples: tf.data.Dataset) -> tf.data.Dataset:
    if self.count == 1:
      return examples
    return examples.shard(self.count, self.index)

  def repeated(self, examples: tf.data.Dataset) -> tf.data.Dataset:
    """The examples before batching, repeated when there are several
    replicas, so that every replica takes the same number of steps.

    The shares may differ by an example, so by a batch, and a replica may
    never run a step fewer than the others: they would wait for it
    forever. So several replicas train and validate for steps counted from
    the examples of all (`fit`'s steps_per_epoch and validation_steps),
    each on its share repeated. Repeated before batching, every batch is
    full: tf.distribute splits a batch among the replicas
    (tensorflow/python/distribute/input_lib.py, _make_rebatch_fn), and a
    short one would leave some with none.
    """
    return examples.repeat() if self.count > 1 else examples

  def distributed(self, batches: tf.data.Dataset) -> tf.data.Dataset:
    """The batches, marked as already sharded for tf.distribute."""
    if self.count == 1:
      return batches
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
    return batches.with_options(options)


WHOLE = Shard()


@dataclasses.dataclass(frozen=True)
class Holdout:
  """Which training examples validate: a share picked by a hash of the path,
  so that adding files never moves old ones between the two."""
  fraction: float

  def keeps(self, path: tf.Tensor, for_validation: bool) -> tf.Tensor:
    bucket = tf.strings.to_hash_bucket_fast(path, _HOLDOUT_BUCKETS)
    held_out = bucket < round(self.fraction * _HOLDOUT_BUCKETS)
    return held_out if for_validation else tf.logical_not(held_out)


def expand_file_patterns(patterns: Sequence[str]) -> List[str]:
  """TFX hands run_fn glob patterns, not files."""
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise ValueError(f'no files match {list(patterns)}')
  return files


def examples_inputs(train_patterns: Sequence[str],
                    test_patterns: Sequence[str],
                    facts: dataset_facts.DatasetFacts, config,
                    batch_size: int, shard: Shard = WHOLE) -> Inputs:
  """Inputs from the ExampleGen's TFRecords and its dataset facts.

  With config.validation_fraction, validation is a held-out part of the
  training split; otherwise it is the test split. `batch_size`: the global
  batch, of all replicas together.
  """
  train_count = facts.examples[names.TRAIN_SPLIT]
  test_count = facts.examples[names.TEST_SPLIT]

  def read(patterns, count, shuffle, holdout=None):
    return examples_dataset(patterns, count, config.input_shape, batch_size,
                            shuffle, config.cache_limit_mb, holdout, shard)

  return _inputs(read, config, train_patterns, train_count, test_patterns,
                 test_count, facts.class_counts(names.TRAIN_SPLIT))


def files_inputs(train_split, test_split, config, batch_size: int,
                 shard: Shard = WHOLE) -> Inputs:
  """Inputs from class-folder listings (imagedata.class_folders)."""

  def read(split, count, shuffle, holdout=None):
    del count  # the listing has the files themselves
    return files_dataset([f.path for f in split.files],
                         [f.label for f in split.files], config.input_shape,
                         batch_size, shuffle, config.cache_limit_mb, holdout,
                         shard)

  counts = train_split.count_by_class()
  return _inputs(read, config, train_split, len(train_split.files),
                 test_split, len(test_split.files),
                 [counts[n] for n in train_split.class_names])


def _inputs(read, config, train_source, train_count, test_source, test_count,
            class_counts) -> Inputs:
  if not config.validation_fraction:
    return Inputs(read(train_source, train_count, True),
                  read(test_source, test_count, False), train_count,
                  class_counts, test_count)
  holdout = Holdout(config.validation_fraction)
  kept = round(train_count * (1 - config.validation_fraction))
  return Inputs(
      read(train_source, train_count, True, (holdout, False)),
      read(train_source, train_count, False, (holdout, True)),
      kept, class_counts, train_count - kept)


def examples_dataset(file_patterns: Sequence[str], count: int, image_shape,
                     batch_size: int, shuffle: bool, cache_limit_mb: int,
                     holdout: Optional[Tuple[Holdout, bool]] = None,
                     shard: Shard = WHOLE) -> tf.data.Dataset:
  """Batches of (pixels, label) from gzipped TFRecords of the ExampleGen.

  `count` is the number of records, as dataset_info.json gives it: counting
  them here would read every file once more before training.
  """
  # In the same order on every replica (num_parallel_reads interleaves
  # deterministically), so that their shards are disjoint.
  records = shard.take(tf.data.TFRecordDataset(
      expand_file_patterns(file_patterns), compression_type='GZIP',
      num_parallel_reads=AUTOTUNE))
  parsed = records.map(
      lambda r: tf.io.parse_single_example(r, _RECORD_FEATURES),
      num_parallel_calls=AUTOTUNE)
  if holdout:
    rule, for_validation = holdout
    parsed = parsed.filter(lambda f: rule.keeps(f[names.PATH_KEY],
                                                for_validation))
  encoded = parsed.map(lambda f: (f[names.IMAGE_KEY], f[names.LABEL_KEY]))
  return _decode_and_batch(encoded, count, image_shape, batch_size, shuffle,
                           cache_limit_mb, shard)


def files_dataset(paths: Sequence[str], labels: Sequence[int], image_shape,
                  batch_size: int, shuffle: bool, cache_limit_mb: int,
                  holdout: Optional[Tuple[Holdout, bool]] = None,
                  shard: Shard = WHOLE) -> tf.data.Dataset:
  """Batches of (pixels, label) read straight from image files.

  Class folders list their files class by class. To train, the whole list is
  shuffled first, because the shuffle buffer after decoding holds a fraction
  of a large dataset: batches would otherwise hold two or three classes.
  """
  if shuffle:
    order = np.random.default_rng(0).permutation(len(paths))
    paths, labels = [paths[i] for i in order], [labels[i] for i in order]
  # The permutation is seeded: the same on every replica.
  listed = shard.take(tf.data.Dataset.from_tensor_slices(
      (list(paths), tf.constant(labels, tf.int64))))
  if holdout:
    rule, for_validation = holdout
    listed = listed.filter(lambda p, _: rule.keeps(p, for_validation))
  encoded = listed.map(lambda p, label: (tf.io.read_file(p), label),
                       num_parallel_calls=AUTOTUNE)
  return _decode_and_batch(encoded, len(paths), image_shape, batch_size,
                           shuffle, cache_limit_mb, shard)


def _decode_uint8(image_bytes, image_shape) -> tf.Tensor:
  """The model's preprocessing, rounded to uint8: a quarter of float32's
  cache, and exact whenever the file already has the model's size (the
  resize is then the identity); otherwise within half a grey level."""
  return tf.saturate_cast(
      tf.round(images.decode_image(image_bytes, image_shape)), tf.uint8)


def _decode_and_batch(encoded: tf.data.Dataset, count: int, image_shape,
                      batch_size, shuffle, cache_limit_mb,
                      shard: Shard = WHOLE) -> tf.data.Dataset:
  """`count`: the examples of all shards; this one holds its share."""
  count = -(-count // shard.count)
  decoded = encoded.map(lambda b, label: (_decode_uint8(b, image_shape), label),
                        num_parallel_calls=AUTOTUNE,
                        deterministic=not shuffle)
  height, width, channels = image_shape
  if count * height * width * channels <= cache_limit_mb * 2**20:
    decoded = decoded.cache()
  if shuffle:
    decoded = decoded.shuffle(max(1, min(count, _SHUFFLE_BUFFER)),
                              reshuffle_each_iteration=True)
  return shard.distributed(shard.repeated(decoded).batch(batch_size).map(
      lambda x, y: (tf.cast(x, tf.float32), y),
      num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE))


def augmented(batches: tf.data.Dataset, augmenter) -> tf.data.Dataset:
  """Training batches through the model's random augmentation (None: as they
  are), in tf.data's parallel map: on CPUs it runs ahead of the training
  step on the cores the step leaves idle, instead of inside it."""
  if augmenter is None:
    return batches
  return batches.map(lambda x, y: (augmenter(x, training=True), y),
                     num_parallel_calls=AUTOTUNE,
                     deterministic=False).prefetch(AUTOTUNE)
