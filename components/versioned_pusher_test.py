"""Tests for the versioned Pusher's executor: what is published, and when
nothing is."""
import os

from imgcls.contract import names
from imgcls.serving_dir import versions
from tests import artifacts


def test_a_blessed_model_is_published_as_the_next_version(tmp_path):
  base = str(tmp_path / 'serving' / 'M')
  os.makedirs(os.path.join(base, '7'))
  pushed = artifacts.push(tmp_path, base, with_examples=False)
  assert versions.versions(base) == [7, 8]
  assert pushed.get_int_custom_property(names.PROP_PUSHED) == 1
  assert pushed.get_string_custom_property(
      names.PROP_PUSHED_VERSION) == '8'
  assert os.path.isfile(os.path.join(base, '8', 'saved_model.pb'))
  assert os.path.isfile(os.path.join(base, '8', names.PROVENANCE_FILE))


def test_a_model_that_is_not_blessed_publishes_nothing(tmp_path):
  base = str(tmp_path / 'serving' / 'M')
  pushed = artifacts.push(tmp_path, base, with_examples=False, blessed=0)
  assert versions.versions(base) == []
  assert pushed.get_int_custom_property(names.PROP_PUSHED) == 0


def test_old_versions_beyond_keep_versions_are_pruned(tmp_path):
  base = str(tmp_path / 'serving' / 'M')
  for version in (1, 2, 3):
    os.makedirs(os.path.join(base, str(version)))
  artifacts.push(tmp_path, base, with_examples=False, keep_versions=2)
  assert versions.versions(base) == [3, 4]
