"""Running the pipeline on this machine with LocalDagRunner."""
import os

from tfx import v1 as tfx

from serving_dir import versions as model_versions
from pipeline import pipeline as pipeline_def
from pipeline import results
from pipeline.config import PipelineConfig


def run(config: PipelineConfig) -> results.RunResult:
  """Runs ExampleGen -> ... -> Pusher, caching on, and reads back the result."""
  os.makedirs(config.pipeline_root, exist_ok=True)
  newest = model_versions.versions(config.model_base_path)
  tfx.orchestration.LocalDagRunner().run(
      pipeline_def.create_pipeline(
          config,
          published_hint=str(newest[-1]) if newest else '',
          metadata_connection_config=(
              tfx.orchestration.metadata.sqlite_metadata_connection_config(
                  config.metadata_path))))
  return results.load_run(config.pipeline_root)


def summary(result: results.RunResult) -> str:
  """The lines `imgcls run` ends with."""
  info = result.dataset_info
  examples = info.get('examples', {})
  lines = [
      f'run {result.run_id}',
      '  examples: ' + ', '.join(f'{s} {n}' for s, n in examples.items()) +
      f' (test split from {info.get("test_source", "?")})',
      f'  files skipped: {len(info.get("skipped", []))}',
  ]
  if result.accuracy is not None:
    baseline = ('no baseline (first model)' if result.baseline_accuracy is None
                else f'baseline v{result.baseline_version} '
                f'{result.baseline_accuracy:.4f}')
    lines.append(f'  accuracy: {result.accuracy:.4f} against {baseline}')
  if result.blessed is not None:
    verdict = 'blessed' if result.blessed else 'NOT blessed'
    lines.append(f'  {verdict}: {result.blessing_reason}')
  if result.contract_passed is not None:
    lines.append(f'  contract check: {result.contract_reason}')
  if result.pushed_version:
    lines.append(f'  pushed version {result.pushed_version}: '
                 f'{result.pushed_destination}')
  elif result.already_published:
    lines.append(f'  nothing new pushed: this model is already published as '
                 f'version {result.already_published}')
  else:
    lines.append('  nothing pushed')
  return '\n'.join(lines)
