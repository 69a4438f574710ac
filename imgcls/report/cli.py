"""`imgcls report`: the report of a past pipeline run, made again from MLMD."""
import argparse

from imgcls.report import write_report


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      'report', help='write the HTML report of a pipeline run',
      description='Reads a run back from the MLMD store in the pipeline root '
      'and writes <pipeline-root>/reports/<run id>/report.html with its '
      'figures: training curves, confusion matrix, per-class accuracy, the '
      'baseline comparison and blessing, skipped files, the pushed version '
      'and misclassified test images. `imgcls run` writes one after each '
      'run; this command makes it again for any run.')
  parser.add_argument('--pipeline-root', required=True,
                      help='the --pipeline-root of `imgcls run`')
  parser.add_argument('--run', default='latest', metavar='latest|ID',
                      help='the run ID (as `imgcls run` prints it), or latest '
                      '(the default)')
  parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
  print(f'report: {write_report(args.pipeline_root, args.run)}')
  return 0
