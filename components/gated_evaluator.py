"""GatedEvaluator: TFX's Evaluator that takes ServingBaseline and says why.

Two additions to the stock executor:
- a baseline artifact without a model (nothing published yet) is dropped, so
  TFMA judges the first model by its value thresholds alone;
- when the model is not blessed, the failed thresholds (metric, value, bound)
  are logged and recorded on the ModelBlessing as `reason` (tensorflow/tfx#2376:
  the stock Evaluator does not say).
"""
import dataclasses
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow_model_analysis as tfma
from tfx.components import Evaluator
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs

from imgcls.components import serving_baseline
from imgcls.contract import names


class Executor(evaluator_executor.Executor):

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    baselines = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY)
    if baselines and not serving_baseline.has_model(baselines[0]):
      input_dict = {
          k: v for k, v in input_dict.items()
          if k != standard_component_specs.BASELINE_MODEL_KEY
      }
    super().Do(input_dict, output_dict, exec_properties)
    evaluation = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EVALUATION_KEY])
    reasons = failed_thresholds(tfma.load_validation_result(evaluation.uri))
    for reason in reasons:
      logging.warning('model NOT blessed: %s', reason)
    artifact_utils.get_single_instance(
        output_dict[standard_component_specs.BLESSING_KEY]
    ).set_string_custom_property(names.PROP_REASON,
                                 '; '.join(reasons) or names.REASON_PASSED)


@dataclasses.dataclass(frozen=True)
class Accuracies:
  """The accuracy the Evaluator gates on, as its TFMA metrics record it."""
  candidate: Optional[float]  # on the whole test split
  baseline: Optional[float]  # the served model's; None without a baseline


def accuracies(evaluation_uri: str) -> Accuracies:
  """The candidate's and the baseline's accuracy on the whole test split."""
  overall = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    if metrics.slice_key.single_slice_keys:
      continue
    for item in metrics.metric_keys_and_values:
      if item.key.name == names.ACCURACY_METRIC and not item.key.is_diff:
        is_baseline = item.key.model_name == names.BASELINE_MODEL_NAME
        overall[is_baseline] = item.value.double_value.value
  return Accuracies(overall.get(False), overall.get(True))


def confusion_matrix(evaluation_uri: str,
                     num_classes: int) -> Optional[np.ndarray]:
  """counts[actual, predicted] of the candidate on the whole test split, or
  None when the evaluation holds no confusion matrix plot."""
  for plots in tfma.load_plots(evaluation_uri):
    if plots.slice_key.single_slice_keys:
      continue  # a slice: runs before issue 26 also sliced by label
    for item in plots.plot_keys_and_values:
      if (item.key.name != names.CONFUSION_PLOT or
          item.key.model_name == names.BASELINE_MODEL_NAME):
        continue
      matrices = item.value.multi_class_confusion_matrix_at_thresholds.matrices
      counts = np.zeros((num_classes, num_classes), np.int64)
      for entry in matrices[0].entries:
        counts[entry.actual_class_id, entry.predicted_class_id] += int(
            entry.num_weighted_examples)
      return counts
  return None


def per_class_accuracy(counts: np.ndarray,
                       class_names: Sequence[str]) -> Dict[str, float]:
  """Each class's accuracy on its test images, by class name, off the
  confusion matrix (its diagonal over each row).

  These are the numbers a TFMA slice per label would compute: the plot
  predicts the highest probability above threshold 0 (tensorflow_model_
  analysis/metrics/multi_class_confusion_matrix_metrics.py), as
  SparseCategoricalAccuracy takes the argmax. One slice instead of two
  halves TFMA's per-example work (issue 26). Classes without test images
  are left out.
  """
  return {
      name: float(counts[c, c] / counts[c].sum())
      for c, name in sorted(enumerate(class_names), key=lambda x: x[1])
      if counts[c].sum()
  }


def failed_thresholds(result) -> List[str]:
  """'metric = value, threshold: bound' lines from a TFMA ValidationResult."""
  reasons = []
  for per_slice in result.metric_validations_per_slice:
    for failure in per_slice.failures:
      change = (' change against the baseline'
                if failure.metric_key.is_diff else '')
      reasons.append(
          f'{failure.metric_key.name}{change} = '
          f'{failure.metric_value.double_value.value:.4f}, threshold: '
          f'{_describe(failure.metric_threshold)}')
  if result.missing_thresholds:
    reasons.append('a configured metric was not computed')
  return reasons


def threshold_conditions(threshold) -> List[str]:
  """The bounds of a TFMA MetricThreshold, e.g. ['>= 0.9000',
  'change against the served model >= -0.0100']."""
  conditions = []
  value = threshold.value_threshold
  if value.HasField('lower_bound'):
    conditions.append(f'>= {value.lower_bound.value:.4f}')
  if value.HasField('upper_bound'):
    conditions.append(f'<= {value.upper_bound.value:.4f}')
  change = threshold.change_threshold
  if change.HasField('absolute'):
    lower_is_better = (
        change.direction == tfma.MetricDirection.LOWER_IS_BETTER)
    conditions.append(f'change against the served model '
                      f'{"<=" if lower_is_better else ">="} '
                      f'{change.absolute.value:+.4f}')
  return conditions


def _describe(threshold) -> str:
  return ', '.join(threshold_conditions(threshold)) or str(threshold)


class GatedEvaluator(Evaluator):
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
