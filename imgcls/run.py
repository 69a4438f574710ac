"""`imgcls run`: the pipeline on this machine, then its report.

It lives above both pipeline/ and report/, which it composes: the pipeline
does not know about the report.
"""
import argparse

from imgcls.contract import progress
from imgcls.pipeline import config as pipeline_config
from imgcls.pipeline import console as pipeline_console


def register(subparsers) -> None:
  run = subparsers.add_parser(
      'run', help='run the TFX pipeline locally (LocalDagRunner)',
      description='ImageExampleGen -> StatisticsGen -> CuratedSchemaGen -> '
      'DataValidator -> DataGate (data validation: refused data stops here) '
      '-> Tuner (with --tune) -> Trainer -> ServingBaseline -> '
      'GatedEvaluator (against the served model) -> SampleExamples -> '
      'ContractCheck -> Pusher, with an MLMD SQLite store and caching in the '
      'pipeline root; then the run report.')
  pipeline_config.add_pipeline_args(run)
  run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
  config = pipeline_config.checked_at_start(
      pipeline_config.pipeline_config_from_args(args), args, local=True)
  with pipeline_console.run_console(config.pipeline_root, 'run',
                                   args.verbose) as console:
    # TFX loads inside the console
    from imgcls.clients.verify import verify_run
    from imgcls.pipeline import local
    from imgcls.report import write_report
    progress.report('imgcls run: %s -> %s (log: %s)', config.data_root,
                    config.model_base_path, console.log_path)
    result = local.run(config)
    print(local.summary(result))
    print(f'report: {write_report(config.pipeline_root, result.run_id)}')
    verdict = verify_run(config, result)  # with --verify-serving
    if verdict:
      print(verdict.summary())
  # Refused data needs a person (accept it, or fix it), and so does a push
  # the server did not serve as it should: non-zero, for cron.
  return 1 if result.data_refused or (verdict and not verdict.passed) else 0

