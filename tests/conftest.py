"""Fixtures shared by several test modules."""
import pytest

from imgcls.pipeline import kubeflow
from tests import images, kfp_fake_server
from tests import served_models as testing


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
  """A model base path holding version 1 of an (untrained) LenetModel."""
  saved = testing.save_model(str(tmp_path_factory.mktemp('saved') / 'model'))
  base = str(tmp_path_factory.mktemp('serving') / testing.MODEL_NAME)
  testing.push_version(saved, base, 1)
  return base


@pytest.fixture
def kfp_server():
  """A stand-in for KFP's API server on 127.0.0.1 (tests/kfp_fake_server.py)."""
  server = kfp_fake_server.FakeKfp()
  yield server
  server.stop()


@pytest.fixture
def kfp_root(tmp_path, monkeypatch):
  """tmp_path, with the data and serving PVCs' mount paths under it (they are
  the same in the retrain CronJob's pod and the steps'), and a span of data."""
  monkeypatch.setattr(kubeflow, 'DATA_MOUNT', str(tmp_path / 'data'))
  monkeypatch.setattr(kubeflow, 'SERVING_MOUNT', str(tmp_path / 'serving'))
  images.write_class_folders(str(tmp_path / 'data' / 'span-1' / 'train'),
                             {'a': 3, 'b': 3})
  return tmp_path
