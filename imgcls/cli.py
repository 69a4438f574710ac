"""`imgcls`: the console script.

Each package registers its own subcommands (a `register(subparsers)` function
in its `cli` module), so a command lives next to the code it drives. Handlers
import TensorFlow and TFX lazily: `imgcls --help` stays instant.

Every command runs inside a console (imgcls/contract/console.py), entered
here before the handler imports anything heavy: TensorFlow's C++ start-up
(absl's "All log messages before absl::InitializeLog()", oneDNN, cudart_stub,
cuInit) writes to file descriptor 2 before Python logging exists, and only
redirecting the descriptor keeps it off the terminal. What the libraries
print goes to the command's log file (console.log_path), or also to stderr
with -v; the command's own output and progress reach the terminal.
"""
import argparse
import gc
import importlib
import logging
import sys

from imgcls.contract import console
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
                      'Beam log (every command writes it to its log file: '
                      '<pipeline root>/imgcls.log for run and retrain, '
                      '$TMPDIR/imgcls-<uid>/<command>.log for the others)')
  subparsers = parser.add_subparsers(dest='command', required=True,
                                     metavar='COMMAND')
  for module_name in _COMMAND_MODULES:
    importlib.import_module(module_name).register(subparsers)
  return parser


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = build_parser().parse_args(argv)
  args.argv = argv  # as typed: `imgcls retrain` echoes it in its answers
  _configure_logging(args.verbose)
  try:
    with console.Console(console.log_path(None, args.command), args.verbose,
                         terminal_loggers=getattr(args, 'terminal_loggers',
                                                  ())):
      return args.handler(args) or 0
  except UserError as e:
    print(f'imgcls {args.command}: error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f'imgcls {args.command}: interrupted', file=sys.stderr)
    return 130


def _configure_logging(verbose: bool) -> None:
  """Outside a console (before it, and after): warnings on stderr."""
  logging.basicConfig(
      level=logging.INFO if verbose else logging.WARNING,
      format='%(levelname)s %(name)s: %(message)s')
  if not verbose:
    # TFX, MLMD and TensorFlow warn about their own internals on every run.
    for noisy in ('absl', 'tensorflow'):
      logging.getLogger(noisy).setLevel(logging.ERROR)


def entry_point() -> None:
  """The console script: `main`, then `exit_process`."""
  exit_process(main())


def exit_process(code: int) -> None:
  """Exits without the interpreter's last garbage collection.

  At exit CPython collects the cycles among every object still alive: after
  a run, those of the 8,000 modules TensorFlow, TFX and Beam load: seconds
  at the end of every `imgcls run` (docs/benchmarks.md). `gc.freeze`
  moves them out of the collector's sight, so only that pass is skipped:
  atexit handlers, the joins of non-daemon threads and the modules' teardown
  still run, and what the commands write is closed by then (`with` blocks).
  """
  gc.freeze()
  sys.exit(code)


if __name__ == '__main__':
  entry_point()
