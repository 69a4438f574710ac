"""`imgcls serve`: the development stand-in for TF Serving."""
import logging
import signal
import threading

from clients.cli import add_server_address, positive_int, positive_seconds
from dev_server import limits


def register(subparsers) -> None:
  _register_serve(subparsers)


def _register_serve(subparsers) -> None:
  parser = subparsers.add_parser(
      'serve',
      help='serve a model like TF Serving (REST and gRPC), for development',
      description='A development stand-in for TF Serving: serves the latest '
      'version under --model-base-path over TF Serving\'s REST and gRPC APIs, '
      'and swaps in new versions as they appear. Production uses TF Serving; '
      'see docs/serving.md for the differences.')
  parser.add_argument('--model-base-path', required=True,
                      help='the directory holding the integer version '
                      'directories, e.g. <serving_dir>/LenetModel')
  parser.add_argument('--model-name', required=True,
                      help='the name clients use in /v1/models/NAME')
  add_server_address(parser, host_default='127.0.0.1')
  parser.add_argument('--poll-seconds', type=positive_seconds, default=1.0,
                      help='how often to look for new versions (default 1)')
  parser.add_argument('--max-request-bytes', type=positive_int,
                      default=limits.MAX_REQUEST_BYTES,
                      help='the largest REST body or gRPC message accepted '
                      f'(default {limits.MAX_REQUEST_BYTES})')
  parser.set_defaults(handler=_serve)


def _serve(args) -> int:
  from clients.client import address  # pylint: disable=g-import-not-at-top
  from dev_server.server import ModelServer, ServerConfig  # pylint: disable=g-import-not-at-top
  logging.getLogger('serving').setLevel(logging.INFO)  # version changes
  config = ServerConfig(args.model_base_path, args.model_name, args.host,
                        args.rest_port, args.grpc_port, args.poll_seconds,
                        args.max_request_bytes)
  stop = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: stop.set())
  with ModelServer(config) as server:
    print(f'Serving model {config.model_name} from {config.model_base_path}'
          f'\n  REST: http://{address(config.host, server.rest_port)}'
          f'/v1/models/{config.model_name}'
          f'\n  gRPC: {address(config.host, server.grpc_port)}'
          f'\nCtrl-C to stop.', flush=True)
    stop.wait()
  return 0


