"""The local model server over real REST and gRPC calls on 127.0.0.1.

Beyond TF Serving's own cases (tests/test_tf_serving_conformance.py): string
outputs come back over REST as plain strings unless the output's name ends in
`_bytes`; a gRPC Predict answer's `model_spec` names the version and signature
that answered; no part of a URL is a file path (`/v1/models/..%2F..` is a
404).
"""
import base64
import http.client
import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
  classification_pb2,
  get_model_metadata_pb2,
  get_model_status_pb2,
  model_service_pb2_grpc,
  predict_pb2,
  prediction_service_pb2_grpc,
)

from imgcls.clients.client import GrpcClient, RestClient
from imgcls.contract.errors import UserError
from imgcls.dev_server.server import ModelServer, ServerConfig
from tests import served_models as testing

NAME = testing.MODEL_NAME
MAX_REQUEST_BYTES = 1 << 20


@pytest.fixture(scope='module')
def server(base_path):
  config = ServerConfig(base_path, NAME, rest_port=0, grpc_port=0,
                        poll_seconds=0.1, max_request_bytes=MAX_REQUEST_BYTES)
  with ModelServer(config) as running:
    yield running


@pytest.fixture(scope='module')
def in_process(base_path):
  """The version-1 SavedModel, loaded here: what the server must answer."""
  return tf.saved_model.load(f'{base_path}/1')


@pytest.fixture(scope='module')
def grpc_channel(server):
  with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
    yield channel


def _http(server, method, path, body=None):
  """(status, JSON answer) for a raw path, sent exactly as written."""
  connection = http.client.HTTPConnection('127.0.0.1', server.rest_port,
                                          timeout=30)
  try:
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body)
    connection.request(method, path, body=data)
    reply = connection.getresponse()
    assert reply.getheader('Content-Type') == 'application/json'
    return reply.status, json.loads(reply.read())
  finally:
    connection.close()


IMAGES = [testing.png((28, 28), 'L', 1), testing.png((40, 30), 'RGB', 2)]
PIXELS = np.random.default_rng(3).uniform(0, 255, (2, 28, 28, 1)).astype(
    np.float32)
INPUTS = {
    'serving_bytes': {
        'image_bytes_string': np.array(IMAGES, dtype=object)
    },
    'serving_default': {
        'input_tensor': PIXELS
    },
}


def _expected(in_process, signature):
  outputs = in_process.signatures[signature](
      **{k: tf.constant(v) for k, v in INPUTS[signature].items()})
  return {k: v.numpy() for k, v in outputs.items()}


def _assert_same_outputs(actual, expected):
  assert sorted(actual) == sorted(expected)
  for name, value in expected.items():
    if value.dtype.kind == 'f':
      np.testing.assert_allclose(actual[name], value, rtol=1e-6, atol=1e-6)
    else:
      np.testing.assert_array_equal(actual[name], value)


# Status and metadata.


def test_status_json_is_tf_servings(server):
  assert _http(server, 'GET', f'/v1/models/{NAME}') == (200, {
      'model_version_status': [{
          'version': '1',
          'state': 'AVAILABLE',
          'status': {
              'error_code': 'OK',
              'error_message': ''
          }
      }]
  })
  assert _http(server, 'GET', f'/v1/models/{NAME}/versions/1')[0] == 200


def test_metadata_nests_signature_def_twice_with_string_dims(server):
  status, answer = _http(server, 'GET', f'/v1/models/{NAME}/metadata')
  assert status == 200
  assert answer['model_spec'] == {
      'name': NAME,
      'signature_name': '',
      'version': '1'
  }
  signatures = answer['metadata']['signature_def']['signature_def']
  bytes_signature = signatures['serving_bytes']
  assert bytes_signature['method_name'] == 'tensorflow/serving/predict'
  image_input = bytes_signature['inputs']['image_bytes_string']
  assert image_input['dtype'] == 'DT_STRING'
  assert image_input['tensor_shape']['dim'] == [{'size': '-1', 'name': ''}]
  dims = signatures['serving_default']['outputs']['probabilities'][
      'tensor_shape']['dim']
  assert [d['size'] for d in dims] == ['-1', str(len(testing.CLASS_NAMES))]
  assert _http(server, 'GET',
               f'/v1/models/{NAME}/versions/1/metadata')[1] == answer


def test_grpc_status_and_metadata(server, grpc_channel):
  models = model_service_pb2_grpc.ModelServiceStub(grpc_channel)
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = NAME
  status = models.GetModelStatus(request, timeout=30).model_version_status
  assert [(s.version, s.state, s.status.error_code) for s in status] == [
      (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
  ]
  client = GrpcClient('127.0.0.1', server.grpc_port, NAME)
  assert client.signatures() == RestClient('127.0.0.1', server.rest_port,
                                           NAME).signatures()


# Predictions.


@pytest.mark.parametrize('signature', ['serving_bytes', 'serving_default'])
def test_rest_row_format_matches_in_process(server, in_process, signature):
  client = RestClient('127.0.0.1', server.rest_port, NAME)
  prediction = client.predict(signature, INPUTS[signature])
  _assert_same_outputs(prediction.outputs, _expected(in_process, signature))


def test_rest_columnar_format_and_plain_strings(server, in_process):
  body = {
      'signature_name': 'serving_bytes',
      'inputs': [{
          'b64': base64.b64encode(image).decode()
      } for image in IMAGES]
  }
  status, answer = _http(server, 'POST', f'/v1/models/{NAME}:predict', body)
  assert status == 200
  expected = _expected(in_process, 'serving_bytes')
  # Several outputs: an object of whole tensors. class_name does not end in
  # _bytes, so it comes back as plain strings, not base64.
  assert answer['outputs']['class_name'] == [
      n.decode() for n in expected['class_name']
  ]
  np.testing.assert_allclose(answer['outputs']['probabilities'],
                             expected['probabilities'], rtol=1e-6)


def test_rest_row_format_returns_an_object_per_instance(server):
  body = {'instances': PIXELS.tolist()}
  status, answer = _http(server, 'POST', f'/v1/models/{NAME}:predict', body)
  assert status == 200
  assert [sorted(row) for row in answer['predictions']] == [
      ['class_id', 'class_name', 'logits', 'probabilities']
  ] * 2


@pytest.mark.parametrize('signature', ['serving_bytes', 'serving_default'])
def test_grpc_matches_in_process_and_names_the_served_version(
    server, grpc_channel, in_process, signature):
  stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = NAME
  request.model_spec.signature_name = signature
  for name, value in INPUTS[signature].items():
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
  response = stub.Predict(request, timeout=30)
  assert response.model_spec.name == NAME
  assert response.model_spec.version.value == 1
  assert response.model_spec.signature_name == signature
  _assert_same_outputs(
      {k: tf.make_ndarray(v) for k, v in response.outputs.items()},
      _expected(in_process, signature))


def test_grpc_output_filter(server):
  client = GrpcClient('127.0.0.1', server.grpc_port, NAME)
  stub = client._predictions
  request = predict_pb2.PredictRequest(output_filter=['class_name'])
  request.model_spec.name = NAME
  request.inputs['input_tensor'].CopyFrom(tf.make_tensor_proto(PIXELS))
  assert list(stub.Predict(request, timeout=30).outputs) == ['class_name']


# Errors, as TF Serving gives them.

B64_PNG = base64.b64encode(IMAGES[0]).decode()
# Standard and URL-safe base64 differ for these bytes ('+/' against '-_').
URLSAFE = base64.urlsafe_b64encode(b'\xfb\xff\xfe' + IMAGES[0]).decode()


@pytest.mark.parametrize('path, body, status, message', [
    (f'/v1/models/{NAME}:predict', b'{"instances": [1,', 400,
     'JSON Parse error'),
    (f'/v1/models/{NAME}:predict', b'', 400, 'The document is empty'),
    (f'/v1/models/{NAME}:predict', [1, 2], 400, 'Is not object'),
    (f'/v1/models/{NAME}:predict', {
        'signature_name': 'serving_bytes',
        'instances': [{
            'b64': 'not base64!'
        }]
    }, 400, 'Unable to base64 decode'),
    (f'/v1/models/{NAME}:predict', {
        'signature_name': 'serving_bytes',
        'instances': [{
            'b64': URLSAFE
        }]
    }, 400, 'Unable to base64 decode'),
    (f'/v1/models/{NAME}:predict', {
        'signature_name': 'serving_bytes',
        'instances': [{
            'b64': base64.b64encode(b'not an image').decode()
        }]
    }, 400, 'Unknown image file format'),
    (f'/v1/models/{NAME}:predict', {
        'signature_name': 'nope',
        'instances': [1]
    }, 400, 'Serving signature name: "nope" not found in signature def'),
    (f'/v1/models/{NAME}:predict', {
        'instances': [[1.0, 2.0]]
    }, 400, 'input input_tensor has shape [1,2]'),
    (f'/v1/models/{NAME}:predict', {
        'instances': [[[[1.0]]], [[[1.0, 2.0]]]]
    }, 400, 'Expecting tensor size: 1 but got: 2'),
    (f'/v1/models/{NAME}:predict', {
        'instances': [[[[1.0], [2.0]], [[3.0]]]]
    }, 400, 'Encountered list at unexpected size'),
    (f'/v1/models/{NAME}:predict', {
        'instances': [[[['x']]]]
    }, 400, 'JSON Value: "x" Type: String is not of expected type: float'),
    (f'/v1/models/{NAME}:predict', {
        'signature_name': 'serving_bytes'
    }, 400, "Missing 'inputs' or 'instances' key"),
    (f'/v1/models/{NAME}:predict', {
        'instances': [],
        'inputs': []
    }, 400, "expecting only one of 'inputs' or 'instances'"),
    (f'/v1/models/{NAME}:predict', {
        'signature_name': 7,
        'instances': [1]
    }, 400, "'signature_name' key must be a string value"),
    ('/v1/models/other:predict', {
        'instances': [1]
    }, 404, 'Servable not found for request: Latest(other)'),
    (f'/v1/models/{NAME}/versions/9:predict', {
        'instances': [1]
    }, 404, f'Servable not found for request: Specific({NAME}, 9)'),
    (f'/v1/models/{NAME}/labels/stable:predict', {
        'instances': [1]
    }, 400, 'Unrecognized servable version label: stable'),
    (f'/v1/models/{NAME}:classify', {
        'examples': []
    }, 501, 'classify is not implemented'),
    (f'/v1/models/{NAME}', {}, 400,
     f'Malformed request: POST /v1/models/{NAME}'),
])
def test_rest_errors(server, path, body, status, message):
  answer_status, answer = _http(server, 'POST', path, body)
  assert (answer_status, list(answer)) == (status, ['error'])
  assert message in answer['error']


@pytest.mark.parametrize('path, message', [
    ('/v1/models/other', 'Could not find any versions of model other'),
    (f'/v1/models/{NAME}/versions/9',
     f'Could not find version 9 of model {NAME}'),
    ('/v1/models/other/metadata',
     'Servable not found for request: Latest(other)'),
    (f'/v1/models/{NAME}/versions/9/metadata',
     f'Servable not found for request: Specific({NAME}, 9)'),
])
def test_unknown_model_or_version_is_404(server, path, message):
  assert _http(server, 'GET', path) == (404, {'error': message})


@pytest.mark.parametrize('path', [
    '/v1/models/..%2F..',
    '/v1/models/..%2F..%2F..%2Fetc%2Fpasswd',
    f'/v1/models/%2e%2e%2F{NAME}',
    '/etc/passwd',
])
def test_path_traversal_names_an_unknown_model(server, path):
  status, answer = _http(server, 'GET', path)
  assert status == 404 and list(answer) == ['error']


@pytest.mark.parametrize('path', [
    '/v1/models/../../etc/passwd',
    f'/v1/models/{NAME}/versions/..%2F1',
    f'/v1/models/{NAME}/versions/1/../../../1',
])
def test_paths_under_v1_that_name_no_resource_are_malformed(server, path):
  # http_rest_api_handler_test.cc, UnsupportedApiCalls.
  assert _http(server, 'GET', path) == (400, {
      'error': f'Malformed request: GET {path}'
  })


def test_request_body_over_the_limit_is_413(server):
  body = b'{"instances": [' + b' ' * MAX_REQUEST_BYTES + b'1]}'
  status, answer = _http(server, 'POST', f'/v1/models/{NAME}:predict', body)
  assert status == 413
  assert '--max-request-bytes' in answer['error']
  # The connection's body was drained: the server still answers.
  assert _http(server, 'GET', f'/v1/models/{NAME}')[0] == 200


def _grpc_error(call, request) -> grpc.RpcError:
  with pytest.raises(grpc.RpcError) as raised:
    call(request, timeout=30)
  return raised.value


def _predict_request(name=NAME, version=None, signature='', inputs=None):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  for key, value in (inputs or {'input_tensor': PIXELS}).items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  return request


@pytest.mark.parametrize('request_, code, message', [
    (_predict_request(name='other'), grpc.StatusCode.NOT_FOUND,
     'Servable not found for request: Latest(other)'),
    (_predict_request(version=9), grpc.StatusCode.NOT_FOUND,
     f'Servable not found for request: Specific({NAME}, 9)'),
    (_predict_request(signature='nope'), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    (_predict_request(inputs={'input_tensor': PIXELS.astype(np.int32)}),
     grpc.StatusCode.INVALID_ARGUMENT,
     'Expects arg[0] to be float but int32 is provided'),
    (_predict_request(inputs={'pixels': PIXELS}),
     grpc.StatusCode.INVALID_ARGUMENT,
     'input tensor alias not found in signature: pixels'),
    (_predict_request(inputs={
        'input_tensor': PIXELS,
        'extra': PIXELS
    }), grpc.StatusCode.INVALID_ARGUMENT, 'Sent extra: {extra}'),
    (_predict_request(inputs={'input_tensor': PIXELS[0]}),
     grpc.StatusCode.INVALID_ARGUMENT, 'input input_tensor has shape'),
])
def test_grpc_predict_errors(grpc_channel, request_, code, message):
  stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
  error = _grpc_error(stub.Predict, request_)
  assert error.code() == code
  assert message in error.details()


def test_grpc_metadata_and_status_errors(grpc_channel):
  predictions = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
  metadata = get_model_metadata_pb2.GetModelMetadataRequest(
      metadata_field=['labels'])
  metadata.model_spec.name = NAME
  error = _grpc_error(predictions.GetModelMetadata, metadata)
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.details() == 'Metadata field labels is not supported'

  status = get_model_status_pb2.GetModelStatusRequest()
  status.model_spec.name = 'other'
  error = _grpc_error(
      model_service_pb2_grpc.ModelServiceStub(grpc_channel).GetModelStatus,
      status)
  assert error.code() == grpc.StatusCode.NOT_FOUND
  assert error.details() == 'Could not find any versions of model other'


def test_grpc_classify_is_unimplemented(grpc_channel):
  stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
  error = _grpc_error(stub.Classify, classification_pb2.ClassificationRequest())
  assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_ports_in_use_stop_a_second_server_with_a_message(server, base_path):
  for ports in ({'rest_port': server.rest_port, 'grpc_port': 0},
                {'rest_port': 0, 'grpc_port': server.grpc_port}):
    with pytest.raises(UserError, match='cannot serve .* on 127.0.0.1:'):
      ModelServer(ServerConfig(base_path, NAME, **ports)).start()


@pytest.mark.parametrize('name', ['a/b', 'a:b', '..', ''])
def test_model_names_that_paths_cannot_carry_are_refused(base_path, name):
  with pytest.raises(UserError, match='model name'):
    ModelServer(ServerConfig(base_path, name))
