"""`imgcls serve`, `imgcls evaluate-serving` and `imgcls verify-serving`."""
import argparse
import logging
import signal
import threading

from imgcls.errors import UserError
from serving import defaults


def register(subparsers) -> None:
  _register_serve(subparsers)
  _register_evaluate(subparsers)
  _register_verify(subparsers)


def _parsed(convert, accept, what: str):
  """An argparse type: `convert`, then refuse values `accept` rejects."""
  def parse(text: str):
    try:
      value = convert(text)
    except ValueError:
      value = None
    if value is None or not accept(value):
      raise argparse.ArgumentTypeError(f'{text} is not {what}')
    return value
  return parse


_INFINITY = float('inf')
_port = _parsed(int, lambda v: 0 <= v <= 65535, 'a port (0..65535)')
_positive_int = _parsed(int, lambda v: v > 0, 'a positive integer')
_version = _parsed(int, lambda v: v >= 0, 'a version (an integer >= 0)')
_positive_seconds = _parsed(float, lambda v: 0 < v < _INFINITY,
                            'a positive number of seconds')
_seconds = _parsed(float, lambda v: 0 <= v < _INFINITY,
                   'a number of seconds >= 0')


def _add_server_address(parser, host_default=None) -> None:
  parser.add_argument('--host', default=host_default,
                      required=host_default is None,
                      help='the model server' if host_default is None else
                      f'the address to bind (default {host_default}: this '
                      f'machine only; 0.0.0.0 for every interface)')
  parser.add_argument('--rest-port', type=_port, default=defaults.REST_PORT,
                      help=f'REST port (default {defaults.REST_PORT})')
  parser.add_argument('--grpc-port', type=_port, default=defaults.GRPC_PORT,
                      help=f'gRPC port (default {defaults.GRPC_PORT})')


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
  _add_server_address(parser, host_default='127.0.0.1')
  parser.add_argument('--poll-seconds', type=_positive_seconds, default=1.0,
                      help='how often to look for new versions (default 1)')
  parser.add_argument('--max-request-bytes', type=_positive_int,
                      default=defaults.MAX_REQUEST_BYTES,
                      help='the largest REST body or gRPC message accepted '
                      f'(default {defaults.MAX_REQUEST_BYTES})')
  parser.set_defaults(handler=_serve)


def _register_evaluate(subparsers) -> None:
  parser = subparsers.add_parser(
      'evaluate-serving',
      help='accuracy, latency and protocol agreement of a served model',
      description='Sends a test split (<test-dir>/<class>/<images>) through '
      'REST and/or gRPC with each image signature, and reports accuracy, '
      'p50/p95 latency, errors, and whether the protocols (and, with '
      '--model-path, the SavedModel run in-process) agree. Exits 1 if a '
      'request failed or the sources disagree.')
  parser.add_argument('--test-dir', required=True)
  _add_server_address(parser)
  parser.add_argument('--model-name', required=True)
  parser.add_argument('--protocol', choices=defaults.PROTOCOLS + ('both',),
                      default='both')
  parser.add_argument('--signature', choices=defaults.IMAGE_SIGNATURES,
                      help='one signature only (default: both)')
  parser.add_argument('--version', type=_version,
                      help='the version to evaluate (default: the latest '
                      'AVAILABLE one when the run starts)')
  parser.add_argument('--batch-size', type=_positive_int, default=32)
  parser.add_argument('--model-path',
                      help='a local SavedModel (the same version) to compare '
                      'the served answers with')
  parser.set_defaults(handler=_evaluate)


def _register_verify(subparsers) -> None:
  parser = subparsers.add_parser(
      'verify-serving',
      help='check that a served version answers correctly (a rollout gate)',
      description='Waits until the version (or the latest) is AVAILABLE, '
      'sends one image over REST and gRPC with each image signature, and '
      'checks the answers. Exits non-zero, saying why, if anything is wrong.')
  _add_server_address(parser)
  parser.add_argument('--model-name', required=True)
  parser.add_argument('--version', type=_version,
                      help='the version to check (default: the latest)')
  parser.add_argument('--timeout', type=_seconds, default=60.0,
                      help='seconds to wait for AVAILABLE (default 60)')
  parser.add_argument('--image',
                      help='an image to send (default: a generated PNG)')
  parser.add_argument('--class-names',
                      help='the model\'s classes in label order, comma '
                      'separated; the answer must be one of them')
  parser.set_defaults(handler=_verify)


def _serve(args) -> int:
  from serving.client import address  # pylint: disable=g-import-not-at-top
  from serving.server import ModelServer, ServerConfig  # pylint: disable=g-import-not-at-top
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


def _clients(args, protocols):
  from serving.client import GrpcClient, RestClient  # pylint: disable=g-import-not-at-top
  make = {
      'rest': lambda: RestClient(args.host, args.rest_port, args.model_name),
      'grpc': lambda: GrpcClient(args.host, args.grpc_port, args.model_name),
  }
  return [make[protocol]() for protocol in protocols]


def _evaluate(args) -> int:
  from serving.evaluate import evaluate_serving  # pylint: disable=g-import-not-at-top
  protocols = (defaults.PROTOCOLS
               if args.protocol == 'both' else (args.protocol,))
  signatures = ((args.signature,)
                if args.signature else defaults.IMAGE_SIGNATURES)
  return evaluate_serving(args.test_dir, _clients(args, protocols), signatures,
                          args.version, args.batch_size, args.model_path)


def _verify(args) -> int:
  from serving import image_inputs  # pylint: disable=g-import-not-at-top
  from serving.verify import verify_serving  # pylint: disable=g-import-not-at-top
  image = _read_image(args.image) if args.image else image_inputs.demo_png()
  class_names = ([name.strip() for name in args.class_names.split(',')]
                 if args.class_names else None)
  rest, grpc = _clients(args, ('rest', 'grpc'))
  return verify_serving(rest, grpc, args.version, args.timeout, image,
                        class_names)


def _read_image(path: str) -> bytes:
  from components import class_folders  # pylint: disable=g-import-not-at-top
  try:
    with open(path, 'rb') as f:
      image = f.read()
  except OSError as e:
    raise UserError(f'cannot read --image: {e}') from e
  problem = class_folders.image_problem(image)
  if problem:
    raise UserError(f'--image {path}: {problem}')
  return image
