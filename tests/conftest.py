"""Fixtures shared by several test modules."""
import pytest

from tests import served_models as testing


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
  """A model base path holding version 1 of an (untrained) LenetModel."""
  saved = testing.save_model(str(tmp_path_factory.mktemp('saved') / 'model'))
  base = str(tmp_path_factory.mktemp('serving') / testing.MODEL_NAME)
  testing.push_version(saved, base, 1)
  return base
