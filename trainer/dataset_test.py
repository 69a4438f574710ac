"""Replicas' shares of the input: disjoint, together the whole, and each
replica's batches endless, so that all take the same steps."""
import pytest
import tensorflow as tf

from imgcls.imagedata import class_folders
from imgcls.trainer import dataset
from tests import images, training_data

TRAIN = {'a': 21, 'b': 20}  # 41: shares of different sizes


def _examples(shard, examples_dir, batch_size=4):
  return dataset.examples_dataset(
      [f'{examples_dir}/Split-train/*'], sum(TRAIN.values()), (28, 28, 1),
      batch_size, shuffle=True, cache_limit_mb=64, shard=shard)


def _pixels(batches, count):
  """The first `count` examples, as bytes (the images are all distinct)."""
  return [x.tobytes() for x, _ in batches.unbatch().take(count)
          .as_numpy_iterator()]


@pytest.fixture(scope='module')
def examples_dir(tmp_path_factory):
  uri = str(tmp_path_factory.mktemp('examples'))
  training_data.write_examples(uri, {'train': TRAIN, 'test': {'a': 2, 'b': 2}})
  return uri


def test_one_replica_reads_every_example_once_per_pass(examples_dir):
  batches = _examples(dataset.WHOLE, examples_dir)
  assert batches.cardinality() != tf.data.INFINITE_CARDINALITY
  seen = _pixels(batches, 1000)
  assert len(seen) == len(set(seen)) == sum(TRAIN.values())


@pytest.mark.parametrize('count', [2, 3])
def test_replicas_shares_of_one_file_are_disjoint_and_whole(examples_dir,
                                                            count):
  """One TFRecord file and several replicas: what tf.distribute's FILE
  sharding refuses."""
  total = sum(TRAIN.values())
  shares = []
  for index in range(count):
    share = -(-total // count) if index < total % count else total // count
    batches = _examples(dataset.Shard(count, index), examples_dir)
    assert batches.cardinality() == tf.data.INFINITE_CARDINALITY
    assert (batches.options().experimental_distribute.auto_shard_policy ==
            tf.data.experimental.AutoShardPolicy.OFF)
    first_pass = _pixels(batches, share)
    assert len(set(first_pass)) == share
    shares.append(set(first_pass))
    # Repeated: the next pass holds the same examples, every batch full.
    second_pass = _pixels(batches, 2 * share)[share:]
    assert set(second_pass) == shares[-1]
  assert sum(len(s) for s in shares) == len(set.union(*shares)) == total


def test_class_folder_shares_are_disjoint_and_whole(tmp_path):
  images.write_class_folders(str(tmp_path / 'train'), {'a': 5, 'b': 4})
  split = class_folders.read_split(str(tmp_path / 'train'))
  paths = [f.path for f in split.files]
  labels = [f.label for f in split.files]
  shares = [_pixels(dataset.files_dataset(
      paths, labels, (28, 28, 1), 2, True, 64,
      shard=dataset.Shard(2, index)), 5 - index) for index in range(2)]
  assert not set(shares[0]) & set(shares[1])
  assert len(set(shares[0]) | set(shares[1])) == len(paths)


def test_every_batch_of_a_replica_is_full(examples_dir):
  """tf.distribute splits each batch among the replicas: a short one would
  leave some replica an empty batch."""
  batches = _examples(dataset.Shard(2, 1), examples_dir, batch_size=8)
  sizes = [len(y) for _, y in batches.take(10).as_numpy_iterator()]
  assert sizes == [8] * 10
