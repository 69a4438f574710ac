"""TF Serving's REST API (port 8501), as http_server.cc and
http_rest_api_handler.cc answer it.

- Only paths under `/v1/` reach the handler (kHTTPRestApiHandlerPathRegex);
  any other path is a 404, except the Prometheus path when metrics are on.
- The handler sees the path with its query string, as libevent's
  `uri_path()` gives it: `/v1/models/m?x=1` asks for model `m?x=1`.
- GET matches the status/metadata pattern and POST the predict pattern;
  anything else under /v1/ (another method, or a path neither pattern
  matches) is 400 `Malformed request: METHOD PATH`.
- OPTIONS (a CORS preflight) is answered by the HTTP server itself: 200 with
  an http(s) `Origin` header, 400 without; the body is empty.
- `Content-Encoding: gzip` bodies are decompressed first (evhttp_request.cc);
  one that does not decompress becomes an empty body, as there.
The model name in a path is percent-decoded, then only compared with the
served model names: no part of a URL ever reaches the file system.
"""
import http.server
import json
import logging
import re
import time
from typing import List, Optional, Tuple
import urllib.parse
import zlib

from google.protobuf import json_format
import grpc
from tensorflow_serving.apis import get_model_metadata_pb2

from imgcls.clients.status import ServingError, invalid_argument
from imgcls.dev_server import json_tensors
from imgcls.dev_server.core import SIGNATURE_DEF_FIELD, ServingCore
from imgcls.dev_server.http_transport import DeadlineRequestHandler
from imgcls.dev_server.metrics import Metrics
from imgcls.serving_dir.versions import MAX_VERSION

_log = logging.getLogger(__name__)

# TF Serving's patterns (http_rest_api_util.cc), with ASCII digits only.
_HANDLER_PATH = re.compile(r'/v1/.*', re.IGNORECASE | re.DOTALL)
_VERSION_OR_LABEL = r'(?:/versions/([0-9]+)|/labels/([^/:]+))?'
_PREDICT_PATH = re.compile(
    r'/v1/models/([^/:]+)' + _VERSION_OR_LABEL +
    r':(classify|regress|predict)', re.IGNORECASE)
_STATUS_PATH = re.compile(
    r'/v1/models(?:/([^/:]+))?' + _VERSION_OR_LABEL + r'(?:/(metadata))?',
    re.IGNORECASE)
_ORIGIN = re.compile(r'https?://')
_JSON = 'application/json'
_DRAIN_CHUNK = 1 << 16
# ZLib::kMaxUncompressedBytes (util/net_http/compression/gzip_zlib.h).
_MAX_UNCOMPRESSED_BYTES = 100 << 20
_CORS_HEADERS = (('Access-Control-Allow-Origin', '*'),
                 ('Access-Control-Allow-Methods', 'POST, GET'),
                 ('Access-Control-Allow-Headers', 'Content-Type'))


def _json_dict(message) -> dict:
  """A proto as TF Serving prints it: field names kept, defaults included."""
  return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                   always_print_fields_with_no_presence=True)


def gunzip(body: bytes) -> bytes:
  """A gzip body decompressed, or b'' if it does not decompress within TF
  Serving's limit (it then parses an empty body)."""
  decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
  try:
    data = decompressor.decompress(body, _MAX_UNCOMPRESSED_BYTES)
  except zlib.error:
    return b''
  if decompressor.unconsumed_tail or not decompressor.eof:
    return b''
  return data


class RestReply:
  """What the transport sends back."""

  def __init__(self, status: int, body: bytes = b'',
               content_type: Optional[str] = _JSON,
               headers: Tuple[Tuple[str, str], ...] = ()):
    self.status = status
    self.body = body
    self.content_type = content_type
    self.headers = headers


def _json_reply(status: int, payload: dict) -> RestReply:
  return RestReply(status, json.dumps(payload).encode('utf-8'))


class RestApi:
  """Answers (method, path, body) as TF Serving's REST handler does."""

  def __init__(self, core: ServingCore, metrics: Metrics,
               enable_cors: bool = False):
    self._core = core
    self._metrics = metrics
    self._extra_headers = _CORS_HEADERS if enable_cors else ()

  def handle(self, method: str, path: str, body: bytes,
             origin: str = '') -> RestReply:
    """The reply to one request; `path` includes its query string."""
    prometheus_path = self._metrics.prometheus_path
    if prometheus_path and urllib.parse.urlsplit(path).path == prometheus_path:
      return self._prometheus(path)
    if not _HANDLER_PATH.fullmatch(path):
      return _json_reply(404, {'error': 'Not Found'})
    started = time.monotonic()
    request = _Request(method, path)
    try:
      if method == 'OPTIONS':
        reply, status = self._preflight(origin)
      else:
        reply = _json_reply(200, self._dispatch(request, body))
        status = grpc.StatusCode.OK
    except ServingError as e:
      reply, status = _json_reply(e.http_status, {'error': e.message}), e.code
    except Exception as e:  # a bug: say so
      _log.exception('%s %s failed', method, path)
      reply = _json_reply(500, {'error': f'Internal error: {e}'})
      status = grpc.StatusCode.INTERNAL
    self._metrics.record_request(request.model_name, request.verb, 'REST',
                                 status, time.monotonic() - started)
    reply.headers += self._extra_headers
    return reply

  def _prometheus(self, path: str) -> RestReply:
    """http_server.cc's ProcessPrometheusRequest: the exact path only."""
    if path != self._metrics.prometheus_path:
      return RestReply(400, (f'Unexpected path: {path}. Should be '
                             f'{self._metrics.prometheus_path}').encode(),
                       'text/plain')
    return RestReply(200, self._metrics.prometheus_page().encode(),
                     'text/plain')

  @staticmethod
  def _preflight(origin: str) -> Tuple[RestReply, grpc.StatusCode]:
    """200 with an http(s) Origin, else FAILED_PRECONDITION ("Origin header
    is missing in CORS preflight"), which only the metrics see: the body is
    empty either way."""
    if not _ORIGIN.search(origin):
      return (RestReply(400, content_type=None),
              grpc.StatusCode.FAILED_PRECONDITION)
    return RestReply(200, content_type=None), grpc.StatusCode.OK

  def _dispatch(self, request: '_Request', body: bytes) -> dict:
    malformed = invalid_argument(
        f'Malformed request: {request.method} {request.path}')
    if request.method == 'POST':
      match = _PREDICT_PATH.fullmatch(request.path)
      if not match:
        raise malformed
      name, version, label = request.model_info(match)
      if request.verb != 'predict':
        raise ServingError(
            grpc.StatusCode.UNIMPLEMENTED,
            f'{request.verb} is not implemented by this development server; '
            f'TF Serving implements it')
      return self._predict(name, version, label, body)
    match = _STATUS_PATH.fullmatch(request.path)
    if request.method != 'GET' or not match:
      raise malformed
    name, version, label = request.model_info(match)
    if not name:
      raise invalid_argument('Missing model name in request.')
    if request.subresource == 'metadata':
      return self._metadata(name, version, label)
    return _json_dict(self._core.model_status(name, version, label))

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
    if not signature.input_dtypes:
      raise invalid_argument(
          f'Failed to get input map for signature: '
          f'{document.get("signature_name") or "DEFAULT"}')
    inputs, row_format = json_tensors.request_inputs(document,
                                                     signature.input_dtypes)
    return json_tensors.response(signature.run(inputs), row_format)


class _Request:
  """One request's method and path, and what ParseModelInfo reads from it."""

  def __init__(self, method: str, path: str):
    self.method = method
    self.path = path
    self.model_name = ''
    self.verb = ''  # 'predict' etc. for POST; '' for GET (as `method` there)
    self.subresource = ''

  def model_info(self, match) -> Tuple[str, Optional[int], Optional[str]]:
    """(name, version, label), percent-decoded like curl_easy_unescape."""
    name, version, label, last = match.groups()
    self.model_name = urllib.parse.unquote(name or '', errors='surrogateescape')
    if self.method == 'POST':
      self.verb = last.lower()
    else:
      self.subresource = (last or '').lower()
    if version is not None and int(version) > MAX_VERSION:
      raise invalid_argument(f'Failed to convert version: {version} to '
                             f'numeric.')
    return (self.model_name, None if version is None else int(version),
            None if label is None else urllib.parse.unquote(label))


class RestRequestHandler(DeadlineRequestHandler):
  """HTTP transport for `RestApi`; the server sets `api` and `max_body`."""
  server_version = 'imgcls-serving'
  api: RestApi
  max_body: int

  def do_GET(self):
    self._answer(b'')

  do_DELETE = do_OPTIONS = do_HEAD = do_GET

  def do_POST(self):
    body = self._read_body()
    if body is not None:
      self._answer(body)

  do_PUT = do_PATCH = do_POST

  def _answer(self, body: bytes) -> None:
    if 'gzip' in self.headers.get('Content-Encoding', ''):
      body = gunzip(body)
    reply = self.api.handle(self.command, self.path, body,
                            self.headers.get('Origin', ''))
    self._send(reply)

  def _read_body(self) -> Optional[bytes]:
    """The request body, or None after answering a body it will not read."""
    if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
      return self._read_chunked()
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
      self._refuse_size(length)
      return None
    return self.rfile.read(length)

  def _read_chunked(self) -> Optional[bytes]:
    """A chunked body (RFC 9112 7.1), within the size limit."""
    chunks: List[bytes] = []
    size = 0
    while True:
      try:
        length = int(self.rfile.readline(1024).split(b';')[0], 16)
      except ValueError:
        self.close_connection = True
        self.send_error(400, 'Invalid chunked body')
        return None
      if length == 0:
        break
      size += length
      if size > self.max_body:
        self.close_connection = True
        self._refuse_size(size)
        return None
      chunks.append(self.rfile.read(length))
      self.rfile.readline(8)  # the CRLF after the chunk
    while self.rfile.readline(8192).strip():  # trailer fields
      pass
    return b''.join(chunks)

  def _refuse_size(self, length: int) -> None:
    self.send_error(
        413, f'Request body of {length} bytes is larger than the server\'s '
        f'limit of {self.max_body} bytes (--max-request-bytes)')

  def _drain(self, length: int) -> None:
    """Reads and drops a body, so the client gets to read the answer."""
    while length > 0:
      chunk = self.rfile.read(min(length, _DRAIN_CHUNK))
      if not chunk:
        break
      length -= len(chunk)

  def send_error(self, code, message=None, explain=None):
    """Every error of the transport itself, as TF Serving's JSON."""
    del explain
    if code == http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
      code = http.HTTPStatus.BAD_REQUEST  # as libevent answers it
    self._send(_json_reply(code, {'error': message or
                                  self.responses[code][0]}))

  def _send(self, reply: RestReply) -> None:
    self.send_response(reply.status)
    if reply.content_type:
      self.send_header('Content-Type', reply.content_type)
    for name, value in reply.headers:
      self.send_header(name, value)
    self.send_header('Content-Length', str(len(reply.body)))
    if self.close_connection:
      self.send_header('Connection', 'close')
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(reply.body)

  def log_message(self, format, *args):
    _log.debug('%s %s', self.address_string(), format % args)
