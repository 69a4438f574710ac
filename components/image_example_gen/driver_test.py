"""Tests for the ImageExampleGen driver: the cache key follows the files the
executor will read, and nothing else."""
import os

from tfx.components.example_gen import utils
from tfx.types import standard_component_specs

from imgcls.components.image_example_gen import driver
from tests import images


def _fingerprint(input_base):
  properties = driver.Driver.resolve_exec_properties(
      driver.Driver.__new__(driver.Driver),
      {standard_component_specs.INPUT_BASE_KEY: input_base}, None, None)
  return (properties[utils.SPAN_PROPERTY_NAME],
          properties[utils.FINGERPRINT_PROPERTY_NAME])


def test_unchanged_data_keeps_its_fingerprint_and_new_files_change_it(
    tmp_path):
  data = str(tmp_path / 'data')
  images.write_class_folders(os.path.join(data, 'train'), {'a': 2, 'b': 2})
  before = _fingerprint(data)
  assert _fingerprint(data) == before
  images.write_class_folders(os.path.join(data, 'train'), {'a': 1, 'b': 0},
                             seed=7)
  assert _fingerprint(data) != before


def test_spans_resolve_to_the_newest_and_older_spans_do_not_count(tmp_path):
  data = tmp_path / 'data'
  for span in (1, 2):
    images.write_class_folders(str(data / f'span-{span}' / 'train'),
                               {'a': 2, 'b': 2}, seed=span)
  span, before = _fingerprint(str(data))
  assert span == 2
  images.write_class_folders(str(data / 'span-1' / 'train'), {'a': 1, 'b': 0},
                             seed=9)
  assert _fingerprint(str(data)) == (2, before)
