"""TF Serving's REST API (port 8501) over the standard library's HTTP server.

Paths are matched with TF Serving's own patterns, and the model name in a
path is percent-decoded as TF Serving does, then only compared with the one
served model name: no part of a URL ever reaches the file system, so
`/v1/models/..%2F..` is an unknown model (404) like any other. A path that
names no resource at all (`/v1/models/../x`) is a 404 too, where TF Serving
says 400 "Malformed request"; a known resource asked with the wrong method
(GET .../m:predict) is that 400, as in TF Serving.
"""
import http.server
import json
import logging
import re
import urllib.parse
from typing import Optional, Tuple

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from dev_server import json_tensors
from dev_server.core import SIGNATURE_DEF_FIELD, ServingCore
from clients.status import ServingError, invalid_argument, not_found
from serving_dir.versions import MAX_VERSION

_log = logging.getLogger(__name__)

# TF Serving's patterns (http_rest_api_util.cc), with ASCII digits only.
_VERSION_OR_LABEL = r'(?:/versions/([0-9]+)|/labels/([^/:]+))?'
_PREDICT_PATH = re.compile(
    r'/v1/models/([^/:]+)' + _VERSION_OR_LABEL +
    r':(classify|regress|predict)', re.IGNORECASE)
_STATUS_PATH = re.compile(
    r'/v1/models(?:/([^/:]+))?' + _VERSION_OR_LABEL + r'(?:/(metadata))?',
    re.IGNORECASE)
_DRAIN_CHUNK = 1 << 16


def _json_dict(message) -> dict:
  """A proto as TF Serving prints it: field names kept, defaults included."""
  return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                   always_print_fields_with_no_presence=True)


class RestApi:
  """Answers (method, path, body) with (HTTP status, JSON object)."""

  def __init__(self, core: ServingCore):
    self._core = core

  def handle(self, method: str, path: str, body: bytes) -> Tuple[int, dict]:
    try:
      return 200, self._dispatch(method, path, body)
    except ServingError as e:
      return e.http_status, {'error': e.message}
    except Exception as e:  # pylint: disable=broad-except  (a bug: say so)
      _log.exception('%s %s failed', method, path)
      return 500, {'error': f'Internal error: {e}'}

  def _dispatch(self, method, path, body) -> dict:
    predict_match = _PREDICT_PATH.fullmatch(path)
    status_match = _STATUS_PATH.fullmatch(path)
    if not (predict_match or status_match):
      raise not_found(f'No such resource: {path}')
    malformed = invalid_argument(f'Malformed request: {method} {path}')
    if method == 'POST':
      if not predict_match:
        raise malformed
      name, version, label, verb = self._model_info(predict_match)
      if verb.lower() != 'predict':
        raise ServingError(
            grpc.StatusCode.UNIMPLEMENTED,
            f'{verb} is not implemented by this development server; TF '
            f'Serving implements it')
      return self._predict(name, version, label, body)
    if method != 'GET' or not status_match:
      raise malformed
    name, version, label, subresource = self._model_info(status_match)
    if not name:
      raise invalid_argument('Missing model name in request.')
    if (subresource or '').lower() == 'metadata':
      return self._metadata(name, version, label)
    return _json_dict(self._core.model_status(name, version, label))

  @staticmethod
  def _model_info(match) -> Tuple[str, Optional[int], Optional[str], str]:
    name, version, label, last = match.groups()
    if version is not None and int(version) > MAX_VERSION:
      raise invalid_argument(f'Failed to convert version: {version} to '
                             f'numeric.')
    return (urllib.parse.unquote(name or ''),
            None if version is None else int(version),
            None if label is None else urllib.parse.unquote(label), last)

  def _metadata(self, name, version, label) -> dict:
    response = self._core.model_metadata(name, version, label)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs)
    return {
        'model_spec': _json_dict(response.model_spec),
        'metadata': {
            'signature_def': _json_dict(signature_defs)
        },
    }

  def _predict(self, name, version, label, body) -> dict:
    document = json_tensors.parse_body(body)
    signature_name = json_tensors.signature_name(document)
    servable = self._core.servable(name, version, label)
    signature = servable.signature(signature_name)
    if signature is None:
      raise invalid_argument(f'Serving signature name: "{signature_name}" '
                             f'not found in signature def')
    inputs, row_format = json_tensors.request_inputs(document,
                                                     signature.input_dtypes)
    return json_tensors.response(signature.run(inputs), row_format)


class RestRequestHandler(http.server.BaseHTTPRequestHandler):
  """HTTP transport for `RestApi`; the server sets `api` and `max_body`."""
  protocol_version = 'HTTP/1.1'
  server_version = 'imgcls-serving'
  # Seconds an idle keep-alive connection holds its thread.
  timeout = 60
  api: RestApi
  max_body: int

  def do_GET(self):  # pylint: disable=invalid-name
    self._answer('GET', b'')

  def do_POST(self):  # pylint: disable=invalid-name
    body = self._read_body()
    if body is not None:
      self._answer('POST', body)

  def _answer(self, method: str, body: bytes) -> None:
    path = urllib.parse.urlsplit(self.path).path
    status, payload = self.api.handle(method, path, body)
    self._send_json(status, payload)

  def _read_body(self) -> Optional[bytes]:
    """The request body, or None after answering a body it will not read."""
    if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
      self.close_connection = True
      self.send_error(411, 'Send request bodies with a Content-Length')
      return None
    try:
      length = int(self.headers.get('Content-Length', 0))
      if length < 0:
        raise ValueError
    except ValueError:
      self.close_connection = True
      self.send_error(400, 'Invalid Content-Length')
      return None
    if length > self.max_body:
      self._drain(length)
      self.send_error(
          413, f'Request body of {length} bytes is larger than the server\'s '
          f'limit of {self.max_body} bytes (--max-request-bytes)')
      return None
    return self.rfile.read(length)

  def _drain(self, length: int) -> None:
    """Reads and drops a body, so the client gets to read the answer."""
    while length > 0:
      chunk = self.rfile.read(min(length, _DRAIN_CHUNK))
      if not chunk:
        break
      length -= len(chunk)

  def send_error(self, code, message=None, explain=None):
    """Every error, the server's own included, as TF Serving's JSON."""
    del explain
    self._send_json(code, {'error': message or self.responses[code][0]})

  def _send_json(self, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode('utf-8')
    self.send_response(status)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    if self.close_connection:
      self.send_header('Connection', 'close')
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    _log.debug('%s %s', self.address_string(), format % args)
