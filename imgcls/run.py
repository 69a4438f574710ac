"""`imgcls run`: the pipeline on this machine, then its report.

It lives above both pipeline/ and report/, which it composes: the pipeline
does not know about the report.
"""
import argparse

from pipeline import config as pipeline_config


def register(subparsers) -> None:
  run = subparsers.add_parser(
      'run', help='run the TFX pipeline locally (LocalDagRunner)',
      description='ExampleGen -> Trainer -> Evaluator (against the served '
      'model) -> contract check -> Pusher, with an MLMD SQLite store and '
      'caching in the pipeline root.')
  pipeline_config.add_pipeline_args(run)
  run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
  from pipeline import local  # pylint: disable=g-import-not-at-top
  from report import write_report  # pylint: disable=g-import-not-at-top
  config = pipeline_config.pipeline_config_from_args(args)
  result = local.run(config)
  print(local.summary(result))
  print(f'report: {write_report(config.pipeline_root, result.run_id)}')
  return 0
