"""TF Serving's own test cases, ported to the local server over real HTTP and
gRPC on 127.0.0.1.

Each test names the upstream case it comes from (tensorflow/serving 2.19.1):
model_servers/http_rest_api_handler_test.cc, util/json_tensor_test.cc,
servables/tensorflow/predict_impl_test.cc and
model_servers/get_model_status_impl_test.cc. The model is TF Serving's test
model rebuilt (half_plus_two, as version 123 with the label "Foo"), so the
expected answers are upstream's. What they pin down:

- `{"b64": ...}` is decoded as absl's Base64Unescape decodes it: `=` padding
  optional, whitespace skipped, URL-safe base64 (`-`, `_`) a 400.
- The body is parsed as TF Serving's rapidjson parses it: parsing stops after
  the first complete value, nesting has no depth limit, errors read `JSON
  Parse error: Invalid value. at offset: N`. A gzip body is decompressed
  first, and one that does not decompress is an empty document.
- The query string is part of the path: `GET /v1/models/M?x=1` asks for
  model `M?x=1`. A path under `/v1/` that names no resource, or a method
  other than GET or POST, is 400 `Malformed request: ...`; OPTIONS is 200
  with an `http(s)://` `Origin` header, else 400, with an empty body; other
  paths are 404.
- Replies use `predictions` (rows) or `outputs` (columns); a signature with
  one output leaves out its name. A request with both `instances` and
  `inputs`, or neither, is a 400 with json_tensor.cc's text.
- Errors are `{"error": "..."}` with TF Serving's messages, its status codes
  mapped to HTTP (INVALID_ARGUMENT 400, NOT_FOUND 404, ...), and over gRPC
  as status codes (an empty `model_spec.name` is INVALID_ARGUMENT `ModelSpec
  has no name specified.`).
- The status endpoint ignores a version label and lists every version.
"""
import base64
import gzip
import http.client
import json

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
  get_model_status_pb2,
  model_service_pb2_grpc,
  predict_pb2,
  prediction_service_pb2_grpc,
)

from imgcls.dev_server.server import ModelServer, ServerConfig
from tests import served_models as testing

NAME = 'half_plus_two'
VERSION = 123
LABEL = 'Foo'
PREDICT = f'/v1/models/{NAME}:predict'


@pytest.fixture(scope='module')
def server(tmp_path_factory):
  base = tmp_path_factory.mktemp('models') / NAME
  testing.save_half_plus_two(str(base / str(VERSION)))
  config = tmp_path_factory.mktemp('config') / 'models.config'
  config.write_text(f'''model_config_list {{ config {{
    name: "{NAME}" base_path: "{base}" model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: {VERSION} }} }}
    version_labels {{ key: "{LABEL}" value: {VERSION} }} }} }}''')
  with ModelServer(ServerConfig(
      model_config_file=str(config), rest_port=0, grpc_port=0,
      allow_version_labels_for_unavailable_models=True)) as running:
    yield running


def _http(server, method, path, body=b'', headers=None):
  """(status, headers, body bytes) of one request, sent as written."""
  connection = http.client.HTTPConnection('127.0.0.1', server.rest_port,
                                          timeout=60)
  try:
    connection.request(method, path, body=body, headers=headers or {})
    reply = connection.getresponse()
    return reply.status, dict(reply.getheaders()), reply.read()
  finally:
    connection.close()


def _json(server, method, path, body=b'', headers=None):
  status, _, data = _http(server, method, path, body, headers)
  return status, json.loads(data)


def _error(server, method, path, body=b''):
  status, answer = _json(server, method, path, body)
  assert list(answer) == ['error'], answer
  return status, answer['error']


# http_rest_api_handler_test.cc


@pytest.mark.parametrize('method, path, message', [
    ('GET', '/v1/foo', 'Malformed request'),
    ('POST', '/v1/foo', 'Malformed request'),
    ('GET', '/v1/models', 'Missing model name'),
    ('GET', '/v1/models/debug/model_name', 'Malformed request'),
    ('POST', '/v1/models', 'Malformed request'),
    ('GET', '/v1/models/foo:predict', 'Malformed request'),
    ('GET', '/v1/models/foo/version/50:predict', 'Malformed request'),
    ('POST', '/v1/models/foo/version/50:regress', 'Malformed request'),
    ('POST', '/v1/models/foo/versions/HELLO:regress', 'Malformed request'),
    ('POST', f'/v1/models/foo/versions/{2**64 - 1}:regress',
     'Failed to convert version'),
    ('POST', '/v1/models/foo/metadata', 'Malformed request'),
    ('POST', '/v1/models/foo/label/some_label:regress', 'Malformed request'),
    ('POST', '/v1/models/foo/versions/50/labels/some_label:regress',
     'Malformed request'),
    ('POST', '/v1/models/foo/versions/some_label:regress',
     'Malformed request'),
])
def test_unsupported_api_calls(server, method, path, message):
  """UnsupportedApiCalls."""
  status, error = _error(server, method, path)
  assert status == 400 and message in error


@pytest.mark.parametrize('method', ['PUT', 'DELETE', 'PATCH'])
def test_other_methods_are_malformed_requests(server, method):
  """ProcessRequest: only POST and GET dispatch; the rest keep the initial
  "Malformed request" status."""
  assert _error(server, method, f'/v1/models/{NAME}') == (
      400, f'Malformed request: {method} /v1/models/{NAME}')


@pytest.mark.parametrize('path', [
    '/v1/models/foo:predict', '/v1/models/foo/versions/50:predict',
    f'/v1/models/{NAME}/versions/99:predict'
])
def test_predict_model_name_version_errors(server, path):
  """PredictModelNameVersionErrors."""
  assert _error(server, 'POST', path, b'{ "instances": [1] }')[0] == 404


@pytest.mark.parametrize('path, body, message', [
    (PREDICT, b'', 'JSON Parse error: The document is empty'),
    (PREDICT, b'instances = [1, 2]', 'JSON Parse error: Invalid value'),
    (PREDICT, b'{ "instances": ["x", "y"] }', 'not of expected type: float'),
    (f'/v1/models/{NAME}/labels/nonexistent:predict',
     b'{ "instances": ["x", "y"] }', 'Unrecognized servable version label'),
    (PREDICT, b'{ "signature_name": 100 }',
     "'signature_name' key must be a string value."),
])
def test_predict_request_errors(server, path, body, message):
  """PredictRequestErrors."""
  status, error = _error(server, 'POST', path, body)
  assert status == 400 and message in error


@pytest.mark.parametrize('path, body, answer', [
    (PREDICT, {'instances': [[1.0, 2.0], [3.0, 4.0]]},
     {'predictions': [[2.5, 3.0], [3.5, 4.0]]}),
    (f'/v1/models/{NAME}/versions/{VERSION}:predict',
     {'instances': [1.0, 2.0]}, {'predictions': [2.5, 3.0]}),
    (f'/v1/models/{NAME}/labels/{LABEL}:predict',
     {'instances': [1.0, 2.0]}, {'predictions': [2.5, 3.0]}),
    (f'/v1/models/{NAME}/versions/{VERSION}:predict',
     {'signature_name': 'serving_default', 'instances': [3.0, 4.0]},
     {'predictions': [3.5, 4.0]}),
    (f'/v1/models/{NAME}/versions/{VERSION}:predict',
     {'signature_name': 'serving_default', 'inputs': [3.0, 4.0]},
     {'outputs': [3.5, 4.0]}),
])
def test_predict(server, path, body, answer):
  """Predict."""
  status, headers, data = _http(server, 'POST', path, json.dumps(body))
  assert (status, json.loads(data)) == (200, answer)
  assert headers['Content-Type'] == 'application/json'


@pytest.mark.parametrize('path', [
    f'/v1/models/{NAME}', f'/v1/models/{NAME}/versions/{VERSION}',
    f'/v1/models/{NAME}/labels/{LABEL}',
    f'/v1/models/{NAME}/labels/no_such_label'
])
def test_get_status(server, path):
  """GetStatus; and a label is ignored (get_model_status_impl.cc looks only at
  model_spec.version), so an unknown one lists every version too."""
  assert _json(server, 'GET', path) == (200, {
      'model_version_status': [{
          'version': str(VERSION),
          'state': 'AVAILABLE',
          'status': {'error_code': 'OK', 'error_message': ''}
      }]
  })


def test_get_model_metadata(server):
  """GetModelMetadata (its expected JSON: the model's signature defs)."""
  status, answer = _json(server, 'GET', f'/v1/models/{NAME}/metadata')
  assert status == 200
  assert answer['model_spec'] == {'name': NAME, 'signature_name': '',
                                  'version': str(VERSION)}
  signature = answer['metadata']['signature_def']['signature_def'][
      'serving_default']
  assert signature['inputs']['x']['dtype'] == 'DT_FLOAT'
  assert signature['method_name'] == 'tensorflow/serving/predict'


# http_server.cc and the HTTP layer (util/net_http)


@pytest.mark.parametrize('origin, status', [('http://example.com', 200),
                                            ('https://a.b', 200), ('', 400),
                                            ('example.com', 400)])
def test_options_preflight_is_answered_by_the_http_server(server, origin,
                                                          status):
  """RestApiRequestDispatcher::ProcessRequest: OPTIONS never reaches the
  handler; the Origin header decides, and the body is empty."""
  headers = {'Origin': origin} if origin else {}
  answer = _http(server, 'OPTIONS', PREDICT, headers=headers)
  assert (answer[0], answer[2]) == (status, b'')


def test_gzip_bodies_are_decompressed(server):
  """evhttp_request.cc, NeedUncompressGzipContent (on by default)."""
  body = gzip.compress(b'{"instances": [1.0, 2.0]}')
  assert _json(server, 'POST', PREDICT, body,
               {'Content-Encoding': 'gzip'}) == (200,
                                                 {'predictions': [2.5, 3.0]})


def test_a_body_that_does_not_gunzip_is_an_empty_document(server):
  assert _error(server, 'POST', PREDICT, b'not gzip',
                ) == (400, 'JSON Parse error: Invalid value. at offset: 0')
  status, error = _json(server, 'POST', PREDICT, b'not gzip',
                        {'Content-Encoding': 'gzip'})
  assert (status, error['error']) == (
      400, 'JSON Parse error: The document is empty')


def test_query_string_is_part_of_the_model_name(server):
  """evhttp_request.cc: uri_path() is the path and its query."""
  assert _error(server, 'GET', f'/v1/models/{NAME}?x=1') == (
      404, f'Could not find any versions of model {NAME}?x=1')


def test_paths_outside_v1_are_not_found(server):
  """http_server.cc: only kHTTPRestApiHandlerPathRegex dispatches."""
  assert _http(server, 'GET', '/index')[0] == 404


# json_tensor_test.cc


def test_deeply_nested_well_formed():
  """DeeplyNestedWellFormed: 500,000 levels of nesting parse."""
  from imgcls.dev_server import json_tensors
  body = (b'{"instances":[1], "nested":' + b'[' * 500000 + b']' * 500000 +
          b'}')
  inputs, _ = json_tensors.request_inputs(json_tensors.parse_body(body),
                                          {'default': tf.int32})
  assert inputs['default'].tolist() == [1]


def test_deeply_nested_malformed(server):
  """DeeplyNestedMalformed, over HTTP."""
  body = b'{"signature_name":' + b'[' * 500000 + b']' * 500000 + b'}'
  status, error = _error(server, 'POST', PREDICT, body)
  assert status == 400 and 'key must be a string value' in error


def test_parsing_stops_after_the_first_value(server):
  """ParseJson: kParseStopWhenDoneFlag."""
  assert _json(server, 'POST', PREDICT, b'{"instances": [1.0]} trailing') == (
      200, {'predictions': [2.5]})


@pytest.mark.parametrize('encoded', [
    base64.b64encode(b'ab').decode(),
    base64.b64encode(b'ab').decode().rstrip('='),
    'YW\nJj\r\nZA==',
])
def test_base64_is_absl_base64_unescape(encoded):
  """SingleUnnamedTensorBase64Scalars with absl's decoder: padding optional,
  whitespace skipped."""
  from imgcls.dev_server import json_tensors
  assert json_tensors.decode_base64(encoded) in (b'ab', b'abcd')


@pytest.mark.parametrize('document, message', [
    ({'instances': [[1, 2], [3]]}, 'Expecting tensor size: 2 but got: 1'),
    ({'instances': [[[1, 2]], [[3], [4]]]}, 'Expecting shape [1,2]'),
    ({'instances': {}}, "Expecting 'instances' to be an list/array"),
    ({'instances': []}, "No values in 'instances' array"),
    ({'inputs': [1], 'instances': [1]},
     "expecting only one of 'inputs' or 'instances' keys to exist"),
    ({'signature': 'x'}, "Missing 'inputs' or 'instances' key"),
])
def test_single_unnamed_tensor_errors(server, document, message):
  """SingleUnnamedTensorErrors."""
  status, error = _error(server, 'POST', PREDICT, json.dumps(document))
  assert status == 400 and message in error


def test_signature_without_inputs(server):
  """FillPredictRequestFromJson: an empty input map."""
  assert _error(server, 'POST', PREDICT, json.dumps({
      'signature_name': 'no_inputs', 'instances': [1]
  })) == (400, 'Failed to get input map for signature: no_inputs')


# predict_impl_test.cc and server_core.cc, over gRPC


@pytest.fixture(scope='module')
def stubs(server):
  with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))


def _predict_request(name=NAME, **spec):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  for key, value in spec.items():
    if key == 'version':
      request.model_spec.version.value = value
    else:
      setattr(request.model_spec, key, value)
  request.inputs['x'].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
  return request


@pytest.mark.parametrize('request_, code, message', [
    (_predict_request(name=''), grpc.StatusCode.INVALID_ARGUMENT,
     'ModelSpec has no name specified.'),
    (_predict_request(name='foo'), grpc.StatusCode.NOT_FOUND,
     'Servable not found for request: Latest(foo)'),
    (_predict_request(version=99), grpc.StatusCode.NOT_FOUND,
     f'Servable not found for request: Specific({NAME}, 99)'),
    (_predict_request(version_label='nope'),
     grpc.StatusCode.INVALID_ARGUMENT,
     'Unrecognized servable version label: nope'),
    (_predict_request(signature_name='nope'),
     grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
])
def test_predict_errors(stubs, request_, code, message):
  """PredictImplTest: MissingOrEmptyModelSpec, EmptyInputList-style lookups,
  and server_core.cc's ServableRequestFromModelSpec."""
  with pytest.raises(grpc.RpcError) as raised:
    stubs[0].Predict(request_, timeout=60)
  assert (raised.value.code(), raised.value.details()) == (code, message)


def test_predict_by_version_label(stubs):
  """PredictImplTest, PredictionWithNamedRegressionSignature-style: a label
  resolves to its version, and the response names it."""
  response = stubs[0].Predict(_predict_request(version_label=LABEL),
                              timeout=60)
  assert response.model_spec.version.value == VERSION
  assert tf.make_ndarray(response.outputs['y']).tolist() == [2.5, 3.0]


def test_get_model_status(stubs):
  """get_model_status_impl_test.cc: MissingOrEmptyModelSpecFailure,
  InvalidModelNameFailure, InvalidModelVersionFailure,
  AllVersionsSuccess."""
  status_stub = stubs[1]

  def status(**spec):
    request = get_model_status_pb2.GetModelStatusRequest()
    if spec:
      request.model_spec.name = spec.pop('name')
      if 'version' in spec:
        request.model_spec.version.value = spec['version']
    return status_stub.GetModelStatus(request, timeout=60)

  for spec, code in (({}, grpc.StatusCode.INVALID_ARGUMENT),
                     ({'name': 'foo'}, grpc.StatusCode.NOT_FOUND),
                     ({'name': NAME, 'version': 999},
                      grpc.StatusCode.NOT_FOUND)):
    with pytest.raises(grpc.RpcError) as raised:
      status(**dict(spec))
    assert raised.value.code() == code
  versions = status(name=NAME).model_version_status
  assert [(v.version, v.state) for v in versions] == [
      (VERSION, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
  ]
