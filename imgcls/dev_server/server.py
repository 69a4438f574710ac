"""A development stand-in for TF Serving: REST and gRPC, started like it.

For machines without Docker or a TF Serving binary. It serves the SavedModels
that the pipeline pushes to `<serving_dir>/<ModelName>/<version>`, over the
same REST and gRPC APIs, so clients, `imgcls evaluate-serving` and `imgcls
verify-serving` work unchanged against it and against TF Serving. Like
tensorflow_model_server it serves one model (--model_name and
--model_base_path) or the models of a ModelServerConfig file, with version
policies and labels, batching, warm-up and Prometheus metrics.

    with ModelServer(ServerConfig(base_path, 'LenetModel', rest_port=0,
                                  grpc_port=0)) as server:
      print(server.rest_port, server.grpc_port)

Differences from TF Serving are listed in docs/serving.md.
"""
import concurrent.futures
import dataclasses
import logging
import os
import re
import threading
import time
from typing import Callable, List, Optional

import grpc

from imgcls.clients.client import address
from imgcls.clients.status import ServingError
from imgcls.contract import names as defaults
from imgcls.contract import storage
from imgcls.contract.errors import UserError
from imgcls.dev_server import config_files, grpc_service, limits, warmup
from imgcls.dev_server.batching import BatchingOptions, BatchScheduler
from imgcls.dev_server.config_files import ModelConfig
from imgcls.dev_server.core import ServingCore
from imgcls.dev_server.http_transport import (
  BoundedHTTPServer,
  BoundedHTTPServerV6,
)
from imgcls.dev_server.metrics import Metrics
from imgcls.dev_server.registry import ModelRegistry
from imgcls.dev_server.rest import RestApi, RestRequestHandler
from imgcls.dev_server.servable import LoadOptions, Servable

_MAX_GRPC_MESSAGE_BYTES = 2**31 - 1  # gRPC's own ceiling, as TF Serving sets
# A name the REST paths can carry: TF Serving's pattern takes no '/' or ':'.
_MODEL_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]*')
_STOP_GRACE_S = 2.0
# Connections that may wait for a REST worker before new ones get a 503.
_MAX_PENDING_CONNECTIONS = 256

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  """How to serve; a port of 0 binds a free port (see ModelServer.*_port).

  The fields after `max_request_bytes` are tensorflow_model_server's flags of
  the same names (model_config_file_poll_wait_seconds in seconds, 0: read
  once), and then this server's own limits.
  """
  model_base_path: str = ''
  model_name: str = ''
  host: str = '127.0.0.1'
  rest_port: int = defaults.REST_PORT
  grpc_port: int = defaults.GRPC_PORT
  poll_seconds: float = 1.0
  max_request_bytes: int = limits.MAX_REQUEST_BYTES
  model_config_file: Optional[str] = None
  model_config_file_poll_wait_seconds: float = 0.0
  enable_batching: bool = False
  batching_parameters_file: Optional[str] = None
  monitoring_config_file: Optional[str] = None
  enable_model_warmup: bool = True
  num_request_iterations_for_warmup: int = 0
  allow_version_labels_for_unavailable_models: bool = False
  rest_api_enable_cors_support: bool = False
  rest_api_num_threads: int = 4 * (os.cpu_count() or 1)
  header_timeout_s: float = 10.0
  max_decoded_image_bytes: int = limits.MAX_DECODED_IMAGE_BYTES

  def check(self) -> None:
    if not self.model_config_file:
      _check_model_name(self.model_name)
      if storage.exists(self.model_base_path) and not storage.isdir(
          self.model_base_path):
        raise UserError(f'{self.model_base_path} is not a directory')
    if self.batching_parameters_file and not self.enable_batching:
      raise UserError('server_options.batching_parameters_file is set without '
                      'setting server_options.enable_batching to true.')
    if not 0 < self.poll_seconds < float('inf'):
      raise UserError(f'poll seconds must be positive, got '
                      f'{self.poll_seconds}')
    if not 0 < self.max_request_bytes < _MAX_GRPC_MESSAGE_BYTES:
      raise UserError(f'max request bytes must be between 1 and '
                      f'{_MAX_GRPC_MESSAGE_BYTES - 1}, got '
                      f'{self.max_request_bytes}')

  def model_configs(self) -> List[ModelConfig]:
    """The models to serve: the config file's, or the one named by flags
    (which TF Serving ignores when there is a config file)."""
    if not self.model_config_file:
      return [ModelConfig(self.model_name, self.model_base_path)]
    configs = config_files.read_model_config_file(self.model_config_file)
    for config in configs:
      _check_model_name(config.name)
    return configs


def _check_model_name(name: str) -> None:
  if not _MODEL_NAME.fullmatch(name):
    raise UserError(
        f'model name {name!r} must be letters, digits, ".", "_" or "-", '
        f'starting with a letter or digit')


class ModelServer:
  """REST and gRPC front ends, and the threads that follow the versions and
  the model config file."""

  def __init__(self, config: ServerConfig):
    config.check()
    self.config = config
    self.metrics = Metrics(
        config_files.read_prometheus_path(config.monitoring_config_file))
    self._batching = self._batching_options()
    self._scheduler: Optional[BatchScheduler] = None
    self.registry = ModelRegistry(
        self._loader_for, config.allow_version_labels_for_unavailable_models)
    self._core = ServingCore(self.registry)
    self._stopping = threading.Event()
    self._threads = []
    self._rest: Optional[BoundedHTTPServer] = None
    self._grpc: Optional[grpc.Server] = None
    # The bound ports, once started.
    self.rest_port: Optional[int] = None
    self.grpc_port: Optional[int] = None

  def _batching_options(self) -> Optional[BatchingOptions]:
    if not self.config.enable_batching:
      return None
    return BatchingOptions.from_proto(
        config_files.read_batching_parameters(
            self.config.batching_parameters_file))

  def start(self) -> 'ModelServer':
    """Loads the versions there are, then opens both ports.

    TF Serving opens its ports only once every model has a version loaded;
    this server opens them even without one, and answers 404 until one
    appears.
    """
    if self._batching:
      self._scheduler = BatchScheduler(self._batching)
    try:
      self._apply_config(self.config.model_configs())
      self.registry.poll()
      self._start_rest()
      self._start_grpc()
    except BaseException:
      self.stop()
      raise
    self._start_thread(
        self._every(self.config.poll_seconds, self.registry.poll),
        'version-poller')
    if (self.config.model_config_file and
        self.config.model_config_file_poll_wait_seconds > 0):
      self._start_thread(
          self._every(self.config.model_config_file_poll_wait_seconds,
                      self._reload_config), 'config-poller')
    return self

  def _apply_config(self, configs: List[ModelConfig]) -> None:
    try:
      self.registry.apply(configs)
    except ServingError as e:
      raise UserError(f'Failed to start server. Error: {e}') from e
    for config in configs:
      if not storage.isdir(config.base_path):
        _log.warning('%s does not exist (yet); serving model %s once a '
                     'version appears there', config.base_path, config.name)

  def _reload_config(self) -> None:
    """Server::PollFilesystemAndReloadConfig: a bad file is logged, and the
    config in force stays."""
    try:
      self.registry.apply(self.config.model_configs())
    except (UserError, ServingError) as e:
      _log.error('Re-reading %s failed; the config in force stays: %s',
                 self.config.model_config_file, e)

  def stop(self) -> None:
    self._stopping.set()
    if self._rest is not None:
      self._rest.shutdown()
      self._rest.server_close()
    if self._grpc is not None:
      self._grpc.stop(_STOP_GRACE_S).wait()
    for thread in self._threads:
      thread.join()
    if self._scheduler is not None:
      self._scheduler.stop()

  def __enter__(self) -> 'ModelServer':
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()

  def _loader_for(self, model_name: str) -> Callable[[str, int], Servable]:
    """How versions of `model_name` load: with batching and the decode
    budget, then warm-up, all timed for the metrics."""
    options = LoadOptions(self._scheduler,
                          self.config.max_decoded_image_bytes)

    def load(path: str, version: int) -> Servable:
      started = time.monotonic()
      try:
        if self._batching:
          self._batching.check()
        servable = Servable.load(path, version, options)
        if self.config.enable_model_warmup:
          warmup.replay(path, servable, model_name,
                        self.config.num_request_iterations_for_warmup,
                        self.metrics)
      except Exception:
        self.metrics.record_load(path, None)
        raise
      self.metrics.record_load(path, time.monotonic() - started)
      return servable

    return load

  def _start_rest(self) -> None:
    handler = type('Handler', (RestRequestHandler,), {
        'api': RestApi(self._core, self.metrics,
                       self.config.rest_api_enable_cors_support),
        'max_body': self.config.max_request_bytes,
        'header_timeout_s': self.config.header_timeout_s,
    })
    server_class = (BoundedHTTPServerV6
                    if ':' in self.config.host else BoundedHTTPServer)
    try:
      self._rest = server_class((self.config.host, self.config.rest_port),
                                handler, self.config.rest_api_num_threads,
                                _MAX_PENDING_CONNECTIONS)
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
    grpc_service.add_services(server, self._core, self.metrics)
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

  def _every(self, seconds: float, action: Callable[[], None]):
    """A thread body that runs `action` every `seconds` until stopped."""

    def run():
      while not self._stopping.wait(seconds):
        try:
          action()
        except Exception:  # keep polling
          _log.exception('%s failed', action.__name__)

    return run
