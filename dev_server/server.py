"""A development stand-in for TF Serving: one model, latest version, REST+gRPC.

For machines without Docker or a TF Serving binary. It serves the SavedModels
that the pipeline pushes to `<serving_dir>/<ModelName>/<version>`, over the
same REST and gRPC APIs, so clients, `imgcls evaluate-serving` and `imgcls
verify-serving` work unchanged against it and against TF Serving.

    with ModelServer(ServerConfig(base_path, 'LenetModel', rest_port=0,
                                  grpc_port=0)) as server:
      print(server.rest_port, server.grpc_port)

Differences from TF Serving are listed in docs/serving.md.
"""
import concurrent.futures
import dataclasses
import http.server
import logging
import os
import re
import socket
import threading
from typing import Optional

import grpc

from contract.errors import UserError
from contract import names as defaults
from dev_server import grpc_service, limits
from clients.client import address
from dev_server.core import ServingCore
from dev_server.rest import RestApi, RestRequestHandler
from dev_server.servable import Servable
from dev_server.versions import ModelVersions

_MAX_GRPC_MESSAGE_BYTES = 2**31 - 1  # gRPC's own ceiling, as TF Serving sets
# A name the REST paths can carry: TF Serving's pattern takes no '/' or ':'.
_MODEL_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]*')
_STOP_GRACE_S = 2.0

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  """How to serve; a port of 0 binds a free port (see ModelServer.*_port)."""
  model_base_path: str
  model_name: str
  host: str = '127.0.0.1'
  rest_port: int = defaults.REST_PORT
  grpc_port: int = defaults.GRPC_PORT
  poll_seconds: float = 1.0
  max_request_bytes: int = limits.MAX_REQUEST_BYTES

  def check(self) -> None:
    if not _MODEL_NAME.fullmatch(self.model_name):
      raise UserError(
          f'model name {self.model_name!r} must be letters, digits, ".", '
          f'"_" or "-", starting with a letter or digit')
    if os.path.exists(self.model_base_path) and not os.path.isdir(
        self.model_base_path):
      raise UserError(f'{self.model_base_path} is not a directory')
    if not 0 < self.poll_seconds < float('inf'):
      raise UserError(f'poll seconds must be positive, got '
                      f'{self.poll_seconds}')
    if not 0 < self.max_request_bytes < _MAX_GRPC_MESSAGE_BYTES:
      raise UserError(f'max request bytes must be between 1 and '
                      f'{_MAX_GRPC_MESSAGE_BYTES - 1}, got '
                      f'{self.max_request_bytes}')


class _RestServer(http.server.ThreadingHTTPServer):
  # socketserver's default backlog of 5 refuses bursts of new connections.
  request_queue_size = 128


class _RestServerV6(_RestServer):
  address_family = socket.AF_INET6


class ModelServer:
  """REST and gRPC front ends, and the thread that follows the versions."""

  def __init__(self, config: ServerConfig):
    config.check()
    self.config = config
    self.versions = ModelVersions(config.model_name, config.model_base_path,
                                  Servable.load)
    self._core = ServingCore(config.model_name, self.versions)
    self._stopping = threading.Event()
    self._threads = []
    self._rest: Optional[_RestServer] = None
    self._grpc: Optional[grpc.Server] = None
    # The bound ports, once started.
    self.rest_port: Optional[int] = None
    self.grpc_port: Optional[int] = None

  def start(self) -> 'ModelServer':
    """Loads the latest version (if any), then opens both ports.

    TF Serving opens its ports only once a version is loaded; this server
    opens them even without one, and answers 404 until one appears.
    """
    if not os.path.isdir(self.config.model_base_path):
      _log.warning('%s does not exist (yet); serving once a version appears '
                   'there', self.config.model_base_path)
    self.versions.poll()
    try:
      self._start_rest()
      self._start_grpc()
    except BaseException:
      self.stop()
      raise
    self._start_thread(self._poll_until_stopped, 'version-poller')
    return self

  def stop(self) -> None:
    self._stopping.set()
    if self._rest is not None:
      self._rest.shutdown()
      self._rest.server_close()
    if self._grpc is not None:
      self._grpc.stop(_STOP_GRACE_S).wait()
    for thread in self._threads:
      thread.join()

  def __enter__(self) -> 'ModelServer':
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()

  def _start_rest(self) -> None:
    handler = type('Handler', (RestRequestHandler,), {
        'api': RestApi(self._core),
        'max_body': self.config.max_request_bytes,
    })
    server_class = _RestServerV6 if ':' in self.config.host else _RestServer
    try:
      self._rest = server_class((self.config.host, self.config.rest_port),
                                handler)
    except OSError as e:
      raise UserError(f'cannot serve REST on '
                      f'{address(self.config.host, self.config.rest_port)}: '
                      f'{e.strerror or e}') from e
    self.rest_port = self._rest.server_address[1]
    self._start_thread(self._rest.serve_forever, 'rest-server')

  def _start_grpc(self) -> None:
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(thread_name_prefix='grpc'),
        options=[
            ('grpc.max_receive_message_length',
             self.config.max_request_bytes),
            ('grpc.max_send_message_length', _MAX_GRPC_MESSAGE_BYTES),
            # Without this a second server binds the same port, and the
            # two split the requests instead of the second one failing.
            ('grpc.so_reuseport', 0),
        ])
    grpc_service.add_services(server, self._core)
    target = address(self.config.host, self.config.grpc_port)
    try:
      port = server.add_insecure_port(target)
    except RuntimeError as e:
      raise UserError(f'cannot serve gRPC on {target}: {e}') from e
    if not port:
      raise UserError(f'cannot serve gRPC on {target}')
    server.start()
    self._grpc, self.grpc_port = server, port

  def _start_thread(self, target, name: str) -> None:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    self._threads.append(thread)

  def _poll_until_stopped(self) -> None:
    while not self._stopping.wait(self.config.poll_seconds):
      try:
        self.versions.poll()
      except Exception:  # pylint: disable=broad-except  (keep polling)
        _log.exception('Polling %s failed', self.config.model_base_path)
