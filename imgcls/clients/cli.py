"""`imgcls evaluate-serving` and `imgcls verify-serving`: clients of any TF
Serving, the real one on a cluster or `imgcls serve` on a laptop."""
import argparse

from imgcls.contract import names as defaults
from imgcls.contract.errors import UserError
from imgcls.pipeline.config import ServingCheck


def register(subparsers) -> None:
  _register_evaluate(subparsers)
  _register_verify(subparsers)
  _register_verify_push(subparsers)


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
port = _parsed(int, lambda v: 0 <= v <= 65535, 'a port (0..65535)')
positive_int = _parsed(int, lambda v: v > 0, 'a positive integer')
_version = _parsed(int, lambda v: v >= 0, 'a version (an integer >= 0)')
positive_seconds = _parsed(float, lambda v: 0 < v < _INFINITY,
                            'a positive number of seconds')
_seconds = _parsed(float, lambda v: 0 <= v < _INFINITY,
                   'a number of seconds >= 0')


def add_server_address(parser, host_default=None) -> None:
  parser.add_argument('--host', default=host_default,
                      required=host_default is None,
                      help='the model server' if host_default is None else
                      f'the address to bind (default {host_default}: this '
                      f'machine only; 0.0.0.0 for every interface)')
  parser.add_argument('--rest-port', type=port, default=defaults.REST_PORT,
                      help=f'REST port (default {defaults.REST_PORT})')
  parser.add_argument('--grpc-port', type=port, default=defaults.GRPC_PORT,
                      help=f'gRPC port (default {defaults.GRPC_PORT})')


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
  add_server_address(parser)
  parser.add_argument('--model-name', required=True)
  parser.add_argument('--protocol', choices=defaults.PROTOCOLS + ('both',),
                      default='both')
  parser.add_argument('--signature', choices=defaults.IMAGE_SIGNATURES,
                      help='one signature only (default: both)')
  parser.add_argument('--version', type=_version,
                      help='the version to evaluate (default: the latest '
                      'AVAILABLE one when the run starts)')
  parser.add_argument('--batch-size', type=positive_int, default=32)
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
  add_server_address(parser)
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


def _register_verify_push(subparsers) -> None:
  default = ServingCheck('')
  parser = subparsers.add_parser(
      'verify-push',
      help='check the version a Kubeflow run pushed; roll it back if it '
      'fails (the last step of `imgcls compile --verify-serving`)',
      description='Finds the version that the Pusher of run --pushed-by-run '
      'published (by its provenance) and checks it as `imgcls run '
      '--verify-serving` does: AVAILABLE within --timeout, and its test '
      'images (the warm-up requests in the version) answered over REST and '
      'gRPC as the model answers them in-process. Exits 0 when it passes or '
      'the run pushed nothing; 1, with the push rolled back, when it fails.')
  parser.add_argument('--model-base-path', required=True,
                      help='<serving dir>/<model name>; the served model '
                      'name is its last part')
  add_server_address(parser)
  parser.add_argument('--timeout', type=_seconds, default=default.timeout_s,
                      help='seconds to wait for AVAILABLE, and for HOST to '
                      f'resolve (default {default.timeout_s:g})')
  parser.add_argument('--pushed-by-run', required=True, metavar='RUN_ID',
                      help='the KFP run ID, as in its artifacts\' URIs')
  parser.add_argument('--every-address', action='store_true',
                      help='check each address HOST resolves to, one after '
                      'another (every ready pod behind a headless Service)')
  parser.set_defaults(handler=_verify_push)


def _clients(args, protocols):
  from imgcls.clients.client import GrpcClient, RestClient
  make = {
      'rest': lambda: RestClient(args.host, args.rest_port, args.model_name),
      'grpc': lambda: GrpcClient(args.host, args.grpc_port, args.model_name),
  }
  return [make[protocol]() for protocol in protocols]


def _evaluate(args) -> int:
  from imgcls.clients.evaluate import evaluate_serving
  protocols = (defaults.PROTOCOLS
               if args.protocol == 'both' else (args.protocol,))
  signatures = ((args.signature,)
                if args.signature else defaults.IMAGE_SIGNATURES)
  return evaluate_serving(args.test_dir, _clients(args, protocols), signatures,
                          args.version, args.batch_size, args.model_path)


def _verify(args) -> int:
  from imgcls.clients import image_inputs
  from imgcls.clients.verify import verify_serving
  image = _read_image(args.image) if args.image else image_inputs.demo_png()
  class_names = ([name.strip() for name in args.class_names.split(',')]
                 if args.class_names else None)
  rest, grpc = _clients(args, ('rest', 'grpc'))
  return verify_serving(rest, grpc, args.version, args.timeout, image,
                        class_names)


def _verify_push(args) -> int:
  from imgcls.clients import verify
  version = verify.version_pushed_by_run(args.model_base_path,
                                         args.pushed_by_run)
  if version is None:
    print(f'nothing pushed by this run ({args.pushed_by_run}) to '
          f'{args.model_base_path}: nothing to verify')
    return 0
  check = ServingCheck(args.host, args.rest_port, args.grpc_port, args.timeout)
  if args.every_address:
    addresses, verdict = verify.verify_push_at_every_address(
        check, args.model_base_path, version)
  else:
    addresses = [args.host]
    verdict = verify.verify_push(check, args.model_base_path, version, None)
  print(f'{args.host} ({", ".join(addresses)}):\n{verdict.summary()}')
  return 0 if verdict.passed else 1


def _read_image(path: str) -> bytes:
  from imgcls.imagedata import class_folders
  try:
    with open(path, 'rb') as f:
      image = f.read()
  except OSError as e:
    raise UserError(f'cannot read --image: {e}') from e
  problem = class_folders.image_problem(image)
  if problem:
    raise UserError(f'--image {path}: {problem}')
  return image
