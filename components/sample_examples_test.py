"""SampleExamples: a few test records and the facts, in the Examples layout
that the ContractCheck and the Pusher read."""
import os

from tfx.types import standard_artifacts

from imgcls.components import sample_examples
from imgcls.contract import names
from imgcls.imagedata import dataset_facts, tf_examples
from tests import artifacts


def _sample(tmp_path, source, size):
  sample = standard_artifacts.Examples()
  sample.uri = str(tmp_path / 'sample')
  sample_examples.SampleExamples.EXECUTOR_SPEC.executor_class().Do(
      {'examples': [source]}, {'sample': [sample]}, {'size': size})
  return sample


def test_the_sample_holds_the_first_test_records_and_the_facts(tmp_path):
  source = artifacts.examples(str(tmp_path / 'examples'), {
      names.TRAIN_SPLIT: artifacts.labelled_images(40),
      names.TEST_SPLIT: artifacts.labelled_images(12, seed=1)})
  source.set_string_custom_property(names.PROP_TRAIN_SPANS, '[2, 3]')
  sample = _sample(tmp_path, source, 5)
  # What the ContractCheck and the Pusher read, as they read it.
  (batch,) = tf_examples.test_records(sample.uri, 32)
  assert batch == next(tf_examples.test_records(source.uri, 5, 5))
  assert dataset_facts.read(sample.uri) == dataset_facts.read(source.uri)
  assert sample.get_string_custom_property(names.PROP_TRAIN_SPANS) == '[2, 3]'
  # Only the test split, so the steps given it download a few images.
  assert sorted(os.listdir(sample.uri)) == sorted(
      [names.DATASET_INFO_FILE, f'Split-{names.TEST_SPLIT}'])
  assert sample.split_names == '["test"]'


def test_a_test_split_smaller_than_the_sample_is_taken_whole(tmp_path):
  source = artifacts.examples(str(tmp_path / 'examples'), {
      names.TRAIN_SPLIT: artifacts.labelled_images(8),
      names.TEST_SPLIT: artifacts.labelled_images(3, seed=1)})
  sample = _sample(tmp_path, source, 32)
  (batch,) = tf_examples.test_records(sample.uri, 32)
  assert len(batch) == 3
