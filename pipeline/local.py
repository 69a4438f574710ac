"""Running the pipeline on this machine with LocalDagRunner."""
import os

from tfx import v1 as tfx

from imgcls.components.data_validation import component as data_validation
from imgcls.pipeline import pipeline as pipeline_def
from imgcls.pipeline import results
from imgcls.pipeline.config import PipelineConfig
from imgcls.serving_dir import versions as model_versions


def run(config: PipelineConfig) -> results.RunResult:
  """Runs ExampleGen -> ... -> Pusher, caching on, and reads back the result."""
  os.makedirs(config.pipeline_root, exist_ok=True)
  newest = model_versions.versions(config.model_base_path)
  try:
    tfx.orchestration.LocalDagRunner().run(
        pipeline_def.create_pipeline(
            config,
            published_hint=str(newest[-1]) if newest else '',
            metadata_connection_config=(
                tfx.orchestration.metadata.sqlite_metadata_connection_config(
                    config.metadata_path))))
  except data_validation.DataRefused:
    pass  # an outcome, not a failure: the result records the anomalies
  return results.load_run(config.pipeline_root)


def summary(result: results.RunResult) -> str:
  """The lines `imgcls run` ends with."""
  lines = [f'run {result.run_id}', '  ' + _examples(result)]
  for describe in (_data, _accuracy, _contract):
    line = describe(result)
    if line:
      lines.append('  ' + line)
  lines.append('  ' + _push(result))
  return '\n'.join(lines)


def describe_component(pipeline_root: str, node_id: str) -> str:
  """The key result of a component of the run in progress, from MLMD: what
  the console shows as the component ends."""
  describe = _DESCRIBE.get(node_id)
  return describe(results.load_run(pipeline_root)) if describe else ''


def _examples(result: results.RunResult) -> str:
  facts = result.dataset
  if facts is None:
    return 'examples: none'
  return ('examples: ' +
          ', '.join(f'{s} {n}' for s, n in facts.examples.items()) +
          f' (test split from {facts.test_source}), '
          f'{len(facts.skipped)} files skipped')


def _data(result: results.RunResult) -> str:
  """The data validation verdict, and each anomaly in TFDV's words."""
  if result.data_passed is None:
    return ''
  if not result.data_anomalies:
    return 'data validation: no anomalies'
  verdict = ('anomalies ACCEPTED (--accept-anomalies)'
             if result.anomalies_accepted else
             'data REFUSED before training (--accept-anomalies, or an '
             'edited schema, lets it through)')
  return '\n    '.join([f'data validation: {verdict}:', *
                        data_validation.anomaly_lines(result.data_anomalies)])


def _baseline(result: results.RunResult) -> str:
  if result.baseline_version is None:
    return 'nothing published yet: no baseline'
  return f'baseline: the served version {result.baseline_version}'


def _training(result: results.RunResult) -> str:
  history = result.history
  if not history:
    return ''
  epochs = len(next(iter(history.values())))
  last = ', '.join(f'{name} {values[-1]:.4f}'
                   for name, values in sorted(history.items()) if values)
  return f'{epochs} epochs; last: {last}'


def _accuracy(result: results.RunResult) -> str:
  if result.accuracy is None:
    return ''
  baseline = ('no baseline (first model)' if result.baseline_accuracy is None
              else f'baseline v{result.baseline_version} '
              f'{result.baseline_accuracy:.4f}')
  line = f'accuracy: {result.accuracy:.4f} against {baseline}'
  if result.blessed is not None:
    verdict = 'blessed' if result.blessed else 'NOT blessed'
    line += f'\n  {verdict}: {result.blessing_reason}'
  return line


def _contract(result: results.RunResult) -> str:
  if result.contract_passed is None:
    return ''
  return f'contract check: {result.contract_reason}'


def _push(result: results.RunResult) -> str:
  if result.pushed_version:
    return (f'pushed version {result.pushed_version}: '
            f'{result.pushed_destination}')
  if result.already_published:
    return (f'nothing new pushed: this model is already published as '
            f'version {result.already_published}')
  return 'nothing pushed'


_DESCRIBE = {
    'ImageExampleGen': _examples,
    'ServingBaseline': _baseline,
    'DataValidator': lambda r: _data(r).partition('\n')[0],
    'Trainer': _training,
    'GatedEvaluator': lambda r: _accuracy(r).replace('\n  ', '; '),
    'ContractCheck': _contract,
    'Pusher': _push,
}
