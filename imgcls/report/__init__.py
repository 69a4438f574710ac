"""Run reports: what a pipeline run did, as an HTML page with figures.

    path = report.write_report(pipeline_root)            # the latest run
    path = report.write_report(pipeline_root, run_id)    # any past run

The page sits at `<pipeline_root>/reports/<run id>/report.html`, with its
PNG figures beside it. `write_report` is imported lazily: `imgcls` imports
this package to register `imgcls report`, and must not pay for TensorFlow.
"""


def write_report(pipeline_root: str, run_id: str = 'latest') -> str:
  """See report.writer.write_report."""
  from imgcls.report import writer
  return writer.write_report(pipeline_root, run_id)
