"""The Pusher's warm-up file and provenance, on a real SavedModel and Examples.

The executor is called directly, as TFX's own executor tests do; the warm-up
file is read back as TF Serving reads it, run through the SavedModel, and
replayed by the local server before it reports the version AVAILABLE.
"""
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.types import standard_artifacts

from imgcls.clients.client import RestClient
from imgcls.components import versioned_pusher
from imgcls.contract import names
from imgcls.contract.saved_model import SavedClassifier
from imgcls.dev_server.server import ModelServer, ServerConfig
from imgcls.serving_dir import provenance, warmup
from tests import artifacts
from tests import served_models as testing

IMAGES = 6


@pytest.fixture(scope='module')
def pushed_version(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('push')
  base_dir = str(tmp_path / 'serving' / testing.MODEL_NAME)
  artifacts.push(tmp_path, base_dir, IMAGES)
  return os.path.join(base_dir, '1'), tmp_path


def _logs(version_dir):
  records = tf.data.TFRecordDataset(warmup.path_in(version_dir))
  return [prediction_log_pb2.PredictionLog.FromString(r)
          for r in records.as_numpy_iterator()]


def test_the_warmup_file_holds_predict_logs_for_both_image_signatures(
    pushed_version):
  version_dir, _ = pushed_version
  logs = _logs(version_dir)
  assert all(log.WhichOneof('log_type') == 'predict_log' for log in logs)
  requests = [log.predict_log.request for log in logs]
  batch_sizes = {
      (r.model_spec.signature_name,
       tf.make_ndarray(next(iter(r.inputs.values()))).shape[0])
      for r in requests}
  warm = min(IMAGES, versioned_pusher.WARMUP_IMAGES)
  assert batch_sizes == {(names.SERVING_BYTES, 1), (names.SERVING_BYTES, warm),
                         (names.SERVING_DEFAULT, 1),
                         (names.SERVING_DEFAULT, warm)}
  assert {r.model_spec.name for r in requests} == {testing.MODEL_NAME}
  assert len(logs) <= names.MAX_WARMUP_RECORDS


def test_the_warmup_requests_run_through_the_model_as_a_client_would(
    pushed_version):
  version_dir, _ = pushed_version
  model = SavedClassifier(version_dir)
  for log in _logs(version_dir):
    request = log.predict_log.request
    inputs = {name: tf.make_ndarray(t) for name, t in request.inputs.items()}
    if request.model_spec.signature_name == names.SERVING_DEFAULT:
      pixels = inputs[names.PIXELS_INPUT]
      assert pixels.shape[1:] == model.pixel_shape  # the fixed input shape
    outputs = model.call(request.model_spec.signature_name, **inputs)
    assert set(outputs[names.CLASS_NAME_OUTPUT]) <= {
        n.encode() for n in artifacts.CLASS_NAMES}
  # serving_default got the same images as serving_bytes, resized as the
  # model resizes them: the answers agree.
  by_signature = {}
  for log in _logs(version_dir):
    request = log.predict_log.request
    inputs = {n: tf.make_ndarray(t) for n, t in request.inputs.items()}
    by_signature.setdefault(request.model_spec.signature_name, []).append(
        model.call(request.model_spec.signature_name, **inputs)[
            names.CLASS_ID_OUTPUT])
  np.testing.assert_array_equal(by_signature[names.SERVING_BYTES][-1],
                                by_signature[names.SERVING_DEFAULT][-1])


def test_the_local_server_replays_the_warmup_file_before_available(
    pushed_version, tmp_path):
  version_dir, _ = pushed_version
  base = tmp_path / testing.MODEL_NAME
  config = ServerConfig(str(base), testing.MODEL_NAME, rest_port=0,
                        grpc_port=0, poll_seconds=0.05)
  testing.push_version(version_dir, str(base), 1)
  # A copy whose warm-up file is not TFRecords: its load must fail, which
  # shows the file is replayed, not ignored.
  broken = testing.push_version(version_dir, str(base) + '-broken', 1)
  with open(warmup.path_in(broken), 'wb') as f:
    f.write(b'not a TFRecord file')
  with ModelServer(config) as server:
    rest = RestClient('127.0.0.1', server.rest_port, testing.MODEL_NAME)
    assert testing.wait_for(lambda: _state(rest, 1) == 'AVAILABLE')
    os.rename(broken, str(base / '2'))
    assert testing.wait_for(lambda: _state(rest, 2) == 'END')
    (failed,) = [s for s in rest.status() if s.version == 2]
    assert 'TFRecord' in failed.error_message
    assert _state(rest, 1) == 'AVAILABLE'


def _state(rest, version):
  return {s.version: s.state for s in rest.status()}.get(version)


def test_provenance_names_model_run_spans_accuracy_and_baseline(
    pushed_version):
  version_dir, tmp_path = pushed_version
  found = provenance.of_version(version_dir)
  assert found.kind == provenance.PUSH
  assert found.model_uri == str(tmp_path / 'model')
  assert found.train_spans == [3, 4]
  assert found.baseline_version == 2
  assert found.pushed_at  # ISO 8601
  assert found.rollback_of is None


def test_the_same_model_is_not_pushed_twice(pushed_version):
  version_dir, tmp_path = pushed_version
  same_model = artifacts.artifact(standard_artifacts.Model,
                                  str(tmp_path / 'model'))
  again = artifacts.push(tmp_path, os.path.dirname(version_dir),
                         trained=same_model)
  assert again.get_string_custom_property(names.PROP_ALREADY_PUBLISHED) == '1'
  assert os.listdir(os.path.dirname(version_dir)) == ['1']


def test_without_test_examples_a_version_has_no_warmup_file(tmp_path):
  base_dir = str(tmp_path / 'serving' / testing.MODEL_NAME)
  artifacts.push(tmp_path, base_dir, with_examples=False)
  assert not os.path.exists(warmup.path_in(os.path.join(base_dir, '1')))
  assert provenance.of_version(os.path.join(base_dir, '1')).train_spans == []


def test_more_than_tf_servings_maximum_is_refused(tmp_path):
  request = prediction_log_pb2.PredictLog().request
  with pytest.raises(ValueError, match='more than 1000'):
    warmup.write_requests(str(tmp_path),
                          [request] * (names.MAX_WARMUP_RECORDS + 1))
  assert not os.path.exists(warmup.path_in(str(tmp_path)))
