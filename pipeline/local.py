"""Running the pipeline on this machine with LocalDagRunner."""
import os

from tfx.orchestration import metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from imgcls.components.data_validation import component as data_validation
from imgcls.pipeline import pipeline as pipeline_def
from imgcls.pipeline import results
from imgcls.pipeline import summary as run_summary
from imgcls.pipeline.config import PipelineConfig
from imgcls.serving_dir import versions as model_versions


def run(config: PipelineConfig) -> results.RunResult:
  """Runs ExampleGen -> ... -> Pusher, caching on, and reads back the result."""
  os.makedirs(config.pipeline_root, exist_ok=True)
  newest = model_versions.versions(config.model_base_path)
  try:
    LocalDagRunner().run(
        pipeline_def.create_pipeline(
            config,
            published_hint=str(newest[-1]) if newest else '',
            metadata_connection_config=(
                metadata.sqlite_metadata_connection_config(
                    config.metadata_path))))
  except data_validation.DataRefused:
    pass  # an outcome, not a failure: the result records the anomalies
  return results.load_run(config.pipeline_root)


def summary(result: results.RunResult) -> str:
  """The lines `imgcls run` ends with."""
  return run_summary.as_text(result)


def describe_component(pipeline_root: str, node_id: str) -> str:
  """The key result of a component of the run in progress, from MLMD: what
  the console shows as the component ends."""
  if node_id not in run_summary.BY_COMPONENT:
    return ''
  return run_summary.component_text(results.load_run(pipeline_root), node_id)
