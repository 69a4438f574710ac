"""A run's outcome, step by step: one model that `imgcls run` prints as text
(pipeline.local, and the console as each component ends) and the report
shows as HTML (report.page).
"""
import dataclasses
from typing import List, Optional, Tuple

from imgcls.components.data_validation.component import anomaly_lines
from imgcls.pipeline.results import RunResult


@dataclasses.dataclass(frozen=True)
class Verdict:
  """What one step decided or produced, in words."""
  label: str  # the step's part, e.g. 'Pushed'
  line: str  # one line of plain text, e.g. 'pushed version 3: /serving/M/3'
  passed: Optional[bool] = None  # None: facts, not a verdict
  details: Tuple[str, ...] = ()  # more lines, e.g. each anomaly


EXAMPLES = 'Examples'
BASELINE = 'Served model (baseline)'
DATA_VALIDATION = 'Data validation'
TRAINING = 'Training'
ACCURACY = 'Test accuracy'
BLESSING = 'Blessing'
CONTRACT = 'Contract check'
PUSHED = 'Pushed'
# The parts `imgcls run` ends with, in the pipeline's order.
RUN_SUMMARY = (EXAMPLES, DATA_VALIDATION, ACCURACY, BLESSING, CONTRACT,
               PUSHED)
# The part each component's end shows on the console.
BY_COMPONENT = {
    'ImageExampleGen': (EXAMPLES,),
    'ServingBaseline': (BASELINE,),
    'DataValidator': (DATA_VALIDATION,),
    'Trainer': (TRAINING,),
    'GatedEvaluator': (ACCURACY, BLESSING),
    'ContractCheck': (CONTRACT,),
    'Pusher': (PUSHED,),
}


def verdicts(result: RunResult) -> List[Verdict]:
  """Every part the run got to, in the pipeline's order."""
  found = [_examples(result), _baseline(result), _data(result),
           _training(result), _accuracy(result), _blessing(result),
           _contract(result), _push(result)]
  return [v for v in found if v is not None]


def as_text(result: RunResult) -> str:
  """The lines `imgcls run` ends with."""
  lines = [f'run {result.run_id}']
  for verdict in verdicts(result):
    if verdict.label in RUN_SUMMARY:
      lines.append('\n    '.join(['  ' + verdict.line, *verdict.details]))
  return '\n'.join(lines)


def component_text(result: RunResult, node_id: str) -> str:
  """The key result of a component, in one line, as the console shows it
  when the component ends."""
  parts = BY_COMPONENT.get(node_id, ())
  return '; '.join(v.line for v in verdicts(result) if v.label in parts)


def _examples(result: RunResult) -> Verdict:
  facts = result.dataset
  if facts is None:
    return Verdict(EXAMPLES, 'examples: none')
  counts = ', '.join(f'{s} {n}' for s, n in facts.examples.items())
  return Verdict(EXAMPLES, f'examples: {counts} (test split from '
                 f'{facts.test_source}), {len(facts.skipped)} files skipped')


def _baseline(result: RunResult) -> Verdict:
  if result.baseline_version is None:
    return Verdict(BASELINE, 'nothing published yet: no baseline')
  return Verdict(BASELINE,
                 f'baseline: the served version {result.baseline_version}')


def _data(result: RunResult) -> Optional[Verdict]:
  """The data validation verdict, and each anomaly in TFDV's words."""
  if result.data_passed is None:
    return None
  if not result.data_anomalies:
    return Verdict(DATA_VALIDATION, 'data validation: no anomalies', True)
  verdict = ('anomalies ACCEPTED (--accept-anomalies)'
             if result.anomalies_accepted else
             'data REFUSED before training (--accept-anomalies, or an '
             'edited schema, lets it through)')
  return Verdict(DATA_VALIDATION, f'data validation: {verdict}:',
                 result.data_passed,
                 tuple(anomaly_lines(result.data_anomalies)))


def _training(result: RunResult) -> Optional[Verdict]:
  history = result.history
  if not history:
    return None
  epochs = len(next(iter(history.values())))
  last = ', '.join(f'{name} {values[-1]:.4f}'
                   for name, values in sorted(history.items()) if values)
  return Verdict(TRAINING, f'{epochs} epochs; last: {last}')


def _accuracy(result: RunResult) -> Optional[Verdict]:
  if result.accuracy is None:
    return None
  baseline = ('no baseline (first model)' if result.baseline_accuracy is None
              else f'baseline v{result.baseline_version} '
              f'{result.baseline_accuracy:.4f}')
  return Verdict(ACCURACY,
                 f'accuracy: {result.accuracy:.4f} against {baseline}')


def _blessing(result: RunResult) -> Optional[Verdict]:
  if result.accuracy is None or result.blessed is None:
    return None
  verdict = 'blessed' if result.blessed else 'NOT blessed'
  return Verdict(BLESSING, f'{verdict}: {result.blessing_reason}',
                 result.blessed)


def _contract(result: RunResult) -> Optional[Verdict]:
  if result.contract_passed is None:
    return None
  return Verdict(CONTRACT, f'contract check: {result.contract_reason}',
                 result.contract_passed)


def _push(result: RunResult) -> Verdict:
  if result.pushed_version:
    return Verdict(PUSHED, f'pushed version {result.pushed_version}: '
                   f'{result.pushed_destination}', True)
  if result.already_published:
    return Verdict(PUSHED, f'nothing new pushed: this model is already '
                   f'published as version {result.already_published}')
  return Verdict(PUSHED, 'nothing pushed', False)
