"""Clients of TF Serving's REST and gRPC APIs, with one interface.

`RestClient` and `GrpcClient` answer the same three questions (status,
signatures, predict) in the same types, so a caller can send the same images
through both protocols and compare. Strings come back as bytes from both
(REST's text and base64 alike), as TensorFlow returns them.

A server that cannot be reached raises `ServerUnreachable`, a UserError: the
commands then stop with its message. A server that answers with an error
raises `RequestFailed`, which callers may count and go on.
"""
import base64
import dataclasses
import json
import time
from typing import Dict, List, Optional
import urllib.error
import urllib.parse
import urllib.request

from google.protobuf import json_format
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
  get_model_metadata_pb2,
  get_model_status_pb2,
  model_pb2,
  model_service_pb2_grpc,
  predict_pb2,
  prediction_service_pb2_grpc,
)

from imgcls.clients.status import code_from_number
from imgcls.contract.errors import UserError

DEFAULT_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.5
# gRPC clients default to 4 MB messages; image batches need more.
MAX_GRPC_MESSAGE_BYTES = 1 << 30
_B64 = 'b64'


def address(host: str, port: int) -> str:
  """host:port, with IPv6 hosts in brackets."""
  return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


class ServerUnreachable(UserError):
  """No answer from the server at all (connection refused, timeout, ...)."""


class RequestFailed(Exception):
  """The server answered with an error."""

  def __init__(self, protocol: str, code: str, message: str):
    super().__init__(f'{protocol} {code}: {message}')
    self.protocol = protocol
    self.code = code
    self.message = message


@dataclasses.dataclass(frozen=True)
class VersionStatus:
  version: int
  state: str  # AVAILABLE, LOADING, END, ...
  error_code: str  # OK, NOT_FOUND, ...
  error_message: str


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  dtype: str  # DT_FLOAT, DT_STRING, ...
  shape: Optional[List[int]]  # -1 for a dynamic size; None: unknown rank


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
  inputs: Dict[str, TensorInfo]
  outputs: Dict[str, TensorInfo]


@dataclasses.dataclass(frozen=True)
class Prediction:
  outputs: Dict[str, np.ndarray]
  version: Optional[int]  # the version that answered, where the reply says


def _tensor_info(info: dict) -> TensorInfo:
  shape = info.get('tensor_shape', {})
  dims = None if shape.get('unknown_rank') else [
      int(dim.get('size', 0)) for dim in shape.get('dim', [])
  ]
  return TensorInfo(info.get('dtype', 'DT_INVALID'), dims)


def _signatures(signature_def_map: dict) -> Dict[str, SignatureInfo]:
  """Signatures from a SignatureDefMap in JSON (both protocols give one)."""
  return {
      name: SignatureInfo(
          {k: _tensor_info(v) for k, v in sig.get('inputs', {}).items()},
          {k: _tensor_info(v) for k, v in sig.get('outputs', {}).items()})
      for name, sig in signature_def_map.get('signature_def', {}).items()
  }


class RestClient:
  """TF Serving's REST API at http://host:port."""
  protocol = 'rest'

  def __init__(self, host: str, port: int, model_name: str,
               timeout: float = DEFAULT_TIMEOUT_S):
    self.base_url = f'http://{address(host, port)}'
    self.model_name = model_name
    self._timeout = timeout
    self._single_outputs: Dict[tuple, str] = {}

  def status(self, version: Optional[int] = None) -> List[VersionStatus]:
    answer = self._call(self._model_url(version))
    return [
        VersionStatus(int(s['version']), s['state'],
                      s.get('status', {}).get('error_code', 'OK'),
                      s.get('status', {}).get('error_message', ''))
        for s in answer.get('model_version_status', [])
    ]

  def signatures(self,
                 version: Optional[int] = None) -> Dict[str, SignatureInfo]:
    answer = self._call(self._model_url(version) + '/metadata')
    return _signatures(answer['metadata']['signature_def'])

  def predict(self, signature: str, inputs: Dict[str, np.ndarray],
              version: Optional[int] = None) -> Prediction:
    """Sends `inputs` in the row format ("instances"); bytes go as base64."""
    answer = self._call(
        self._model_url(version) + ':predict', {
            'signature_name': signature,
            'instances': _instances(inputs)
        })
    rows = answer['predictions']
    if rows and isinstance(rows[0], dict) and not _is_b64(rows[0]):
      outputs = {name: _array([row[name] for row in rows]) for name in rows[0]}
    else:  # A single output comes without its name.
      outputs = {self._single_output(signature, version): _array(rows)}
    return Prediction(outputs, None)

  def _single_output(self, signature, version) -> str:
    key = (signature, version)
    if key not in self._single_outputs:
      outputs = list(self.signatures(version)[signature].outputs)
      self._single_outputs[key] = outputs[0]
    return self._single_outputs[key]

  def _model_url(self, version: Optional[int]) -> str:
    name = urllib.parse.quote(self.model_name, safe='')
    url = f'{self.base_url}/v1/models/{name}'
    return url if version is None else f'{url}/versions/{version}'

  def _call(self, url: str, payload: Optional[dict] = None) -> dict:
    data = None if payload is None else json.dumps(payload).encode('utf-8')
    request = urllib.request.Request(
        url, data=data, headers={'Content-Type': 'application/json'})
    try:
      with urllib.request.urlopen(request, timeout=self._timeout) as reply:
        body = reply.read()
    except urllib.error.HTTPError as e:
      raise RequestFailed(self.protocol, f'HTTP {e.code}',
                          _error_message(e.read())) from None
    except (urllib.error.URLError, OSError) as e:
      reason = getattr(e, 'reason', e)
      raise ServerUnreachable(
          f'cannot reach the model server over REST at {self.base_url}: '
          f'{reason}') from None
    try:
      return json.loads(body)
    except ValueError:
      raise RequestFailed(self.protocol, 'invalid reply',
                          _error_message(body)) from None


def _error_message(body: bytes) -> str:
  try:
    return json.loads(body)['error']
  except (ValueError, KeyError, TypeError):
    return body.decode('utf-8', errors='replace')[:500]


def _is_b64(value) -> bool:
  return isinstance(value, dict) and set(value) == {_B64}


def _instances(inputs: Dict[str, np.ndarray]) -> list:
  """Row format: one entry per instance, an object when several inputs."""
  names = list(inputs)
  count = len(inputs[names[0]])
  if len(names) == 1:
    return [_json_value(inputs[names[0]][i]) for i in range(count)]
  return [{name: _json_value(inputs[name][i]) for name in names}
          for i in range(count)]


def _json_value(value):
  value = value.tolist() if isinstance(value, np.ndarray) else value
  if isinstance(value, list):
    return [_json_value(item) for item in value]
  if isinstance(value, bytes):
    return {_B64: base64.b64encode(value).decode('ascii')}
  return value.item() if isinstance(value, np.generic) else value


def _array(value) -> np.ndarray:
  """JSON values as an array; text and base64 leaves become bytes."""
  leaf = value
  while isinstance(leaf, list) and leaf:
    leaf = leaf[0]
  if not isinstance(leaf, (str, dict)):
    return np.array(value)
  return np.array(_bytes_leaves(value), dtype=object)


def _bytes_leaves(value):
  if isinstance(value, list):
    return [_bytes_leaves(item) for item in value]
  if _is_b64(value):
    return base64.b64decode(value[_B64])
  return value.encode('utf-8')


class GrpcClient:
  """TF Serving's gRPC API at host:port."""
  protocol = 'grpc'

  def __init__(self, host: str, port: int, model_name: str,
               timeout: float = DEFAULT_TIMEOUT_S):
    self.target = address(host, port)
    self.model_name = model_name
    self._timeout = timeout
    self._channel = grpc.insecure_channel(self.target, options=[
        ('grpc.max_send_message_length', MAX_GRPC_MESSAGE_BYTES),
        ('grpc.max_receive_message_length', MAX_GRPC_MESSAGE_BYTES),
    ])
    self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(
        self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

  def close(self) -> None:
    self._channel.close()

  def __enter__(self) -> 'GrpcClient':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def status(self, version: Optional[int] = None) -> List[VersionStatus]:
    answer = self._call(
        self._models.GetModelStatus,
        get_model_status_pb2.GetModelStatusRequest(
            model_spec=self._spec(version)))
    states = get_model_status_pb2.ModelVersionStatus.State
    return [
        VersionStatus(s.version, states.Name(s.state),
                      code_from_number(s.status.error_code).name,
                      s.status.error_message)
        for s in answer.model_version_status
    ]

  def signatures(self,
                 version: Optional[int] = None) -> Dict[str, SignatureInfo]:
    answer = self._call(
        self._predictions.GetModelMetadata,
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(version), metadata_field=['signature_def']))
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    answer.metadata['signature_def'].Unpack(signature_defs)
    return _signatures(
        json_format.MessageToDict(signature_defs,
                                  preserving_proto_field_name=True))

  def predict(self, signature: str, inputs: Dict[str, np.ndarray],
              version: Optional[int] = None) -> Prediction:
    request = predict_pb2.PredictRequest(
        model_spec=self._spec(version, signature))
    for name, value in inputs.items():
      request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    answer = self._call(self._predictions.Predict, request)
    outputs = {
        name: tf.make_ndarray(tensor) for name, tensor in answer.outputs.items()
    }
    spec = answer.model_spec
    return Prediction(outputs,
                      spec.version.value if spec.HasField('version') else None)

  def _spec(self, version: Optional[int], signature: str = ''):
    spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature)
    if version is not None:
      spec.version.value = version
    return spec

  def _call(self, method, request):
    try:
      return method(request, timeout=self._timeout)
    except grpc.RpcError as e:
      if e.code() in (grpc.StatusCode.UNAVAILABLE,
                      grpc.StatusCode.DEADLINE_EXCEEDED):
        raise ServerUnreachable(
            f'cannot reach the model server over gRPC at {self.target}: '
            f'{e.code().name}: {e.details()}') from None
      raise RequestFailed(self.protocol, e.code().name, e.details()) from None


def wait_until_available(client, version: Optional[int],
                         timeout_s: float) -> int:
  """The version (or the latest) once AVAILABLE; UserError after the timeout.

  Only AVAILABLE counts: TF Serving answers status calls for failed loads too.
  """
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      statuses = client.status(version)
      last = _describe(statuses)
    except ServerUnreachable as e:
      if time.monotonic() >= deadline:
        raise  # says more than "not AVAILABLE"
      statuses, last = [], str(e)
    except RequestFailed as e:
      statuses, last = [], str(e)
    available = [s.version for s in statuses if s.state == 'AVAILABLE']
    if available:
      return max(available)
    if time.monotonic() >= deadline:
      what = (f'model {client.model_name}' +
              ('' if version is None else f' version {version}'))
      waited = f' after {timeout_s:g} s' if timeout_s else ''
      raise UserError(f'{what} is not AVAILABLE{waited}; last answer: {last}')
    time.sleep(max(0.0, min(_POLL_INTERVAL_S, deadline - time.monotonic())))


def _describe(statuses: List[VersionStatus]) -> str:
  return '; '.join(
      f'version {s.version} {s.state}' +
      ('' if s.error_code == 'OK' else f' ({s.error_code}: {s.error_message})')
      for s in statuses)
