"""`imgcls run`: the pipeline on this machine, then its report.

It lives above both pipeline/ and report/, which it composes: the pipeline
does not know about the report.
"""
import argparse
import functools
import os

from contract import progress
from imgcls import console
from pipeline import config as pipeline_config

# In the pipeline root, beside the MLMD store: everything TFX, Beam and
# TensorFlow log during a run.
LOG_FILE = 'imgcls.log'


def register(subparsers) -> None:
  run = subparsers.add_parser(
      'run', help='run the TFX pipeline locally (LocalDagRunner)',
      description='ExampleGen -> Trainer -> Evaluator (against the served '
      'model) -> contract check -> Pusher, with an MLMD SQLite store and '
      'caching in the pipeline root.')
  pipeline_config.add_pipeline_args(run)
  run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
  config = pipeline_config.pipeline_config_from_args(args)
  log_path = os.path.join(config.pipeline_root, LOG_FILE)
  with console.Console(log_path, args.verbose,
                       describe=functools.partial(_describe,
                                                  config.pipeline_root)):
    # pylint: disable=g-import-not-at-top  (TFX loads inside the console)
    from clients.verify import verify_run
    from pipeline import local
    from report import write_report
    # pylint: enable=g-import-not-at-top
    progress.report('imgcls run: %s -> %s (log: %s)', config.data_root,
                    config.model_base_path, log_path)
    result = local.run(config)
    out = progress.output()
    print(local.summary(result), file=out)
    print(f'report: {write_report(config.pipeline_root, result.run_id)}',
          file=out)
    verdict = verify_run(config, result)  # with --verify-serving
    if verdict:
      print(verdict.summary(), file=out)
  # Refused data needs a person (accept it, or fix it), and so does a push
  # the server did not serve as it should: non-zero, for cron.
  return 1 if result.data_refused or (verdict and not verdict.passed) else 0


def _describe(pipeline_root: str, node_id: str) -> str:
  from pipeline import local  # pylint: disable=g-import-not-at-top
  return local.describe_component(pipeline_root, node_id)
