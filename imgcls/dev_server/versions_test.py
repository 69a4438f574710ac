"""Version discovery and swaps of the local model server, under load."""
import os
import time

import numpy as np
import pytest

from imgcls.clients.client import (
  GrpcClient,
  RequestFailed,
  RestClient,
)
from imgcls.dev_server.server import ModelServer, ServerConfig
from imgcls.serving_dir.versions import version_dirs
from tests import served_models as testing

NAME = testing.MODEL_NAME
IMAGE = np.array([testing.png()], dtype=object)
REQUESTS_AFTER_SWAP = 30


@pytest.fixture(scope='module')
def saved_model(tmp_path_factory):
  return testing.save_model(str(tmp_path_factory.mktemp('saved') / 'model'))


@pytest.fixture
def base_path(tmp_path):
  return str(tmp_path / NAME)


def _server(base_path):
  return ModelServer(ServerConfig(base_path, NAME, rest_port=0, grpc_port=0,
                                  poll_seconds=0.05))


def _states(client):
  return {s.version: s.state for s in client.status()}


def test_only_integer_names_are_versions(tmp_path):
  for name in ('1', '12', '007', '.tmp-3', '3.tmp', 'abc', '.5', '٣'):
    (tmp_path / name).mkdir()
  (tmp_path / '9').write_text('a file, not a version')
  assert sorted(version_dirs(str(tmp_path))) == [1, 7, 12]
  assert version_dirs(str(tmp_path / 'missing')) == {}


def test_a_link_to_itself_named_as_a_version_blocks_no_version(
    saved_model, base_path, caplog):
  testing.push_version(saved_model, base_path, 1)
  os.symlink('10', os.path.join(base_path, '10'))  # ln -s 10 10
  with _server(base_path) as server:
    rest = RestClient('127.0.0.1', server.rest_port, NAME)
    assert testing.wait_for(lambda: _available(rest, 1))
    time.sleep(0.2)  # a few polls more
  skipped = [r for r in caplog.records if 'skipped' in r.getMessage()]
  assert [r.getMessage() for r in skipped] == [
      f'{base_path}/10: skipped, not a version: Too many levels of symbolic '
      'links']
  assert not [r for r in caplog.records if r.exc_info]


def test_starts_without_a_version_and_serves_one_when_pushed(
    saved_model, base_path):
  with _server(base_path) as server:
    rest = RestClient('127.0.0.1', server.rest_port, NAME)
    with pytest.raises(RequestFailed, match='Could not find any versions'):
      rest.status()
    with pytest.raises(RequestFailed, match=r'Latest\(Lenet\)') as raised:
      rest.predict('serving_bytes', {'image_bytes_string': IMAGE})
    assert raised.value.code == 'HTTP 404'
    # A half-written push under a non-integer name is ignored.
    os.makedirs(os.path.join(base_path, '1.partial'))
    time.sleep(0.2)
    with pytest.raises(RequestFailed):
      rest.status()

    testing.push_version(saved_model, base_path, 1)
    assert testing.wait_for(lambda: _available(rest, 1))
    answer = rest.predict('serving_bytes', {'image_bytes_string': IMAGE})
    assert answer.outputs['class_name'][0].decode() in testing.CLASS_NAMES


def _available(client, version) -> bool:
  try:
    return _states(client).get(version) == 'AVAILABLE'
  except RequestFailed:
    return False


def test_new_version_swaps_in_without_failing_a_request(saved_model,
                                                        base_path):
  testing.push_version(saved_model, base_path, 1)
  with _server(base_path) as server, testing.Load(server) as load:
    assert testing.wait_for(lambda: load.count >= 20, testing.LOAD_SECONDS)
    testing.push_version(saved_model, base_path, 2)
    assert testing.wait_for(
        lambda: load.requests_since_version(2) >= REQUESTS_AFTER_SWAP,
        testing.LOAD_SECONDS), 'version 2 never answered'
    rest = RestClient('127.0.0.1', server.rest_port, NAME)
    assert _states(rest) == {2: 'AVAILABLE', 1: 'END'}
  assert load.failures == []
  # Once version 2 answered, version 1 never did again.
  first_of_2 = load.versions_seen.index(2)
  assert set(load.versions_seen[first_of_2:]) == {2}


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    saved_model, base_path):
  testing.push_version(saved_model, base_path, 1)
  with _server(base_path) as server:
    rest = RestClient('127.0.0.1', server.rest_port, NAME)
    broken = os.path.join(base_path, '2')
    os.makedirs(broken)
    with open(os.path.join(broken, 'saved_model.pb'), 'wb') as f:
      f.write(b'not a SavedModel')
    assert testing.wait_for(lambda: _states(rest).get(2) == 'END')
    status = {s.version: s for s in rest.status()}
    assert status[2].error_code != 'OK' and status[2].error_message
    assert status[1].state == 'AVAILABLE'
    answer = GrpcClient('127.0.0.1', server.grpc_port, NAME).predict(
        'serving_bytes', {'image_bytes_string': IMAGE})
    assert answer.version == 1

    # Once its files change (the copy completed), the version is retried.
    os.remove(os.path.join(broken, 'saved_model.pb'))
    os.rmdir(broken)
    testing.push_version(saved_model, base_path + '.next', 2)
    os.rename(base_path + '.next/2', broken)
    assert testing.wait_for(lambda: _available(rest, 2))
    assert _states(rest) == {2: 'AVAILABLE', 1: 'END'}
