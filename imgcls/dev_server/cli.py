"""`imgcls serve`: the development stand-in for TF Serving.

It takes tensorflow_model_server's flags (dev_server.flags), so the args of
kubernetes/base/deployment.yaml start it unchanged, paths aside; the
project's older spellings (--model-base-path, --rest-port, ...) are aliases.
"""
import logging
import signal
import threading

from imgcls.clients.cli import port, positive_int, positive_seconds
from imgcls.contract import names as defaults
from imgcls.dev_server import flags, limits

_LOGGER = 'imgcls.dev_server'


def register(subparsers) -> None:
  _register_serve(subparsers)


def _register_serve(subparsers) -> None:
  parser = subparsers.add_parser(
      'serve',
      help='serve models like TF Serving (REST and gRPC), for development',
      description='A development stand-in for TF Serving: serves the '
      'versions under --model_base_path (or the models of --model_config_file)'
      ' over TF Serving\'s REST and gRPC APIs, and swaps in new versions as '
      'they appear. It takes tensorflow_model_server\'s flags. Production '
      'uses TF Serving; see docs/serving.md for the differences.')
  parser.add_argument('--model_base_path', '--model-base-path', default='',
                      help='the directory holding the integer version '
                      'directories, e.g. <serving_dir>/LenetModel')
  parser.add_argument('--model_name', '--model-name', default='',
                      help='the name clients use in /v1/models/NAME')
  parser.add_argument('--host', default='127.0.0.1',
                      help='the address to bind (default 127.0.0.1: this '
                      'machine only; 0.0.0.0 for every interface)')
  parser.add_argument('--rest_api_port', '--rest-port', dest='rest_port',
                      type=port, default=defaults.REST_PORT,
                      help=f'REST port (default {defaults.REST_PORT}; 0: a '
                      'free port)')
  parser.add_argument('--port', '--grpc-port', dest='grpc_port', type=port,
                      default=defaults.GRPC_PORT,
                      help=f'gRPC port (default {defaults.GRPC_PORT}; 0: a '
                      'free port)')
  parser.add_argument('--file_system_poll_wait_seconds', '--poll-seconds',
                      dest='poll_seconds', type=positive_seconds, default=1.0,
                      help='how often to look for new versions (default 1)')
  parser.add_argument('--max-request-bytes', type=positive_int,
                      default=limits.MAX_REQUEST_BYTES,
                      help='the largest REST body or gRPC message accepted '
                      f'(default {limits.MAX_REQUEST_BYTES})')
  parser.add_argument('--max-decoded-image-bytes', type=positive_int,
                      default=limits.MAX_DECODED_IMAGE_BYTES,
                      help='the most bytes of pixels the images of one request '
                      'may declare (default '
                      f'{limits.MAX_DECODED_IMAGE_BYTES})')
  parser.add_argument('--header-timeout-seconds', dest='header_timeout_s',
                      type=positive_seconds, default=10.0,
                      help='time a client has to send a request\'s headers '
                      '(default 10)')
  flags.add_model_server_flags(parser)
  # The server's own log (versions loaded, requests that failed) is its
  # output, as TF Serving's is; the libraries' goes to the log file.
  parser.set_defaults(handler=_serve, terminal_loggers=(_LOGGER,))


def _config(args):
  """The ServerConfig of parsed args: each field from the flag of its name."""
  import dataclasses

  from imgcls.dev_server.server import ServerConfig
  return ServerConfig(**{
      field.name: getattr(args, field.name)
      for field in dataclasses.fields(ServerConfig)
  })


def _serve(args) -> int:
  from imgcls.clients.client import address
  from imgcls.dev_server.server import ModelServer
  logging.getLogger(_LOGGER).setLevel(logging.INFO)  # version changes
  flags.warn_ignored(args)
  config = _config(args)
  stop = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: stop.set())
  with ModelServer(config) as server:
    names = ', '.join(c.name for c in server.registry.configs())
    print(f'Serving {names}'
          f'\n  REST: http://{address(config.host, server.rest_port)}'
          f'/v1/models/NAME'
          f'\n  gRPC: {address(config.host, server.grpc_port)}'
          f'\nCtrl-C to stop.', flush=True)
    stop.wait()
  return 0
