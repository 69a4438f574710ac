"""`imgcls`: the console script.

Each package registers its own subcommands (a `register(subparsers)` function
in its `cli` module), so a command lives next to the code it drives. Handlers
import TensorFlow and TFX lazily: `imgcls --help` stays instant.
"""
import argparse
import importlib
import logging
import sys

from imgcls.contract.errors import UserError

_COMMAND_MODULES = (
    'imgcls.imagedata.cli',
    'imgcls.trainer.cli',
    'imgcls.run',
    'imgcls.pipeline.kubeflow_cli',
    'imgcls.clients.cli',
    'imgcls.serving_dir.cli',
    'imgcls.dev_server.cli',
    'imgcls.retrain.cli',
    'imgcls.report.cli',
)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='imgcls',
      description='Train, ship and serve image classifiers with TFX and TF '
      'Serving.')
  parser.add_argument('-v', '--verbose', action='store_true',
                      help='show on the terminal too what TensorFlow, TFX and '
                      'Beam log (long commands always write it to their log '
                      'file: <pipeline root>/imgcls.log for run and retrain)')
  subparsers = parser.add_subparsers(dest='command', required=True,
                                     metavar='COMMAND')
  for module_name in _COMMAND_MODULES:
    importlib.import_module(module_name).register(subparsers)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  logging.basicConfig(
      level=logging.INFO if args.verbose else logging.WARNING,
      format='%(levelname)s %(name)s: %(message)s')
  if not args.verbose:
    # TFX, MLMD and TensorFlow warn about their own internals on every run.
    for noisy in ('absl', 'tensorflow'):
      logging.getLogger(noisy).setLevel(logging.ERROR)
  try:
    return args.handler(args) or 0
  except UserError as e:
    print(f'imgcls {args.command}: error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f'imgcls {args.command}: interrupted', file=sys.stderr)
    return 130


if __name__ == '__main__':
  sys.exit(main())
