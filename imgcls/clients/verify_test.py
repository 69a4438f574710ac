"""The push check behind `--verify-serving`, against real local servers:
healthy, never loading the version, and answering with another model."""
import os
import shutil

import pytest

from imgcls.clients import verify
from imgcls.dev_server.server import ModelServer, ServerConfig
from imgcls.pipeline.config import ServingCheck
from imgcls.serving_dir import provenance, versions
from tests import artifacts
from tests import served_models as testing

NAME = testing.MODEL_NAME


@pytest.fixture(scope='module')
def models(tmp_path_factory):
  """Two SavedModels of the same classes with different weights, and test
  Examples."""
  root = tmp_path_factory.mktemp('models')
  return (testing.save_model(str(root / 'a'), artifacts.CLASS_NAMES),
          testing.save_model(str(root / 'b'), artifacts.CLASS_NAMES),
          artifacts.examples(str(root / 'examples'),
                             {'test': artifacts.labelled_images(5)}).uri)


def _served(base):
  return ModelServer(ServerConfig(base, NAME, rest_port=0, grpc_port=0,
                                  poll_seconds=0.05))


def _check(server, timeout_s=30.0):
  return ServingCheck('127.0.0.1', server.rest_port, server.grpc_port,
                      timeout_s)


def _pushed_twice(tmp_path, models):
  a, b, _ = models
  base = str(tmp_path / NAME)
  testing.push_version(a, base, 1)
  testing.push_version(b, base, 2)
  return base


def test_a_healthy_server_passes_and_nothing_is_rolled_back(tmp_path, models):
  base = _pushed_twice(tmp_path, models)
  with _served(base) as server:
    verdict = verify.verify_push(_check(server), base, 2, models[2])
  assert verdict.passed, verdict.problem
  assert 'serving verified: version 2' in verdict.summary()
  assert versions.versions(base) == [1, 2]


def test_a_server_that_never_loads_the_version_gets_a_rollback(
    tmp_path, models):
  base = _pushed_twice(tmp_path, models)
  elsewhere = str(tmp_path / 'elsewhere' / NAME)
  testing.push_version(models[0], elsewhere, 1)
  with _served(elsewhere) as server:  # never sees version 2
    verdict = verify.verify_push(_check(server, timeout_s=1), base, 2,
                                 models[2])
  assert not verdict.passed
  assert 'version 2 is not AVAILABLE after 1 s' in verdict.problem
  assert verdict.rolled_back_as == 3
  assert 'rolled back: version 3' in verdict.summary()
  rolled_back = provenance.of_version(os.path.join(base, '3'))
  assert rolled_back.rollback_of == 1


def test_answers_unlike_the_model_in_process_get_a_rollback(tmp_path, models):
  base = _pushed_twice(tmp_path, models)
  # The server's version 2 is model a, while the pushed version 2 is model b.
  impostor = str(tmp_path / 'impostor' / NAME)
  testing.push_version(models[0], impostor, 2)
  with _served(impostor) as server:
    verdict = verify.verify_push(_check(server), base, 2, models[2])
  assert not verdict.passed
  assert 'in-process' in verdict.problem
  assert verdict.rolled_back_as == 3


def test_the_first_version_has_nothing_to_roll_back_to(tmp_path, models):
  base = str(tmp_path / NAME)
  testing.push_version(models[0], base, 1)
  unreachable = ServingCheck('127.0.0.1', testing.free_port(),
                             testing.free_port(), 0.5)
  verdict = verify.verify_push(unreachable, base, 1, models[2])
  assert 'cannot reach the model server' in verdict.problem
  assert verdict.rolled_back_as is None
  assert 'nothing to roll back to' in verdict.summary()
  assert versions.versions(base) == [1]


def test_a_version_before_with_no_saved_model_is_not_rolled_back_to(
    tmp_path, models):
  base = str(tmp_path / NAME)
  os.makedirs(os.path.join(base, '1'))  # made by hand, empty
  testing.push_version(models[0], base, 2)
  unreachable = ServingCheck('127.0.0.1', testing.free_port(),
                             testing.free_port(), 0.5)
  verdict = verify.verify_push(unreachable, base, 2, models[2])
  assert verdict.rolled_back_as is None
  assert (f'version 1 of {base} cannot be served again, nothing was '
          'published') in verdict.summary()
  assert versions.versions(base) == [1, 2]


class _PushingRun:
  """Stands in for local.run: publishes model b as the next version."""

  def __init__(self, model_dir):
    self._model_dir = model_dir

  def __call__(self, config):
    version = versions.publish(
        config.model_base_path,
        lambda tmp_dir: shutil.copytree(self._model_dir, tmp_dir))
    return _Result(str(version), os.path.join(config.model_base_path,
                                              str(version)))


class _Result:
  data_refused = False
  already_published = None

  def __init__(self, version, destination):
    self.pushed_version, self.pushed_destination = version, destination

  def uri(self, key):
    del key  # no Examples: the check sends a generated image


def test_the_retrain_watcher_records_pushed_failed_verification_rolled_back(
    tmp_path, models):
  from imgcls.pipeline.config import PipelineConfig
  from imgcls.retrain import state as state_lib
  from imgcls.retrain import watcher
  testing.write_class_folders(str(tmp_path / 'data' / 'train'),
                              artifacts.CLASS_NAMES)
  base = str(tmp_path / 'serving' / 'LenetModel')
  testing.push_version(models[0], base, 1)
  elsewhere = str(tmp_path / 'elsewhere' / NAME)
  testing.push_version(models[0], elsewhere, 1)
  with _served(elsewhere) as server:  # never sees version 2
    config = PipelineConfig(
        data_root=str(tmp_path / 'data'),
        serving_dir=str(tmp_path / 'serving'),
        pipeline_root=str(tmp_path / 'pipeline'),
        serving_check=_check(server, timeout_s=1))
    attempt = watcher.tick(watcher.RetrainOptions(pipeline=config),
                           run_pipeline=_PushingRun(models[1]))
  assert attempt.outcome == state_lib.Outcome.ROLLED_BACK
  assert attempt.version == '2'
  assert attempt.detail.startswith(
      'pushed, failed verification, rolled back as version 3: ')
  assert state_lib.Outcome.ROLLED_BACK in state_lib.NEEDS_A_PERSON
  assert versions.versions(base) == [1, 2, 3]
