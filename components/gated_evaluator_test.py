"""Tests for the GatedEvaluator: a first model without a baseline, and the
reason recorded when a model is not blessed."""
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2, validation_result_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from imgcls.components import gated_evaluator
from imgcls.contract import names
from tests import artifacts


def _eval_config(min_accuracy: float) -> tfma.EvalConfig:
  threshold = tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
      lower_bound={'value': min_accuracy}))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name=names.SERVING_EXAMPLES,
                                  label_key=names.LABEL_KEY,
                                  prediction_key=names.PROBABILITIES_OUTPUT)],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name='SparseCategoricalAccuracy',
                            per_slice_thresholds=[
                                config_pb2.PerSliceMetricThreshold(
                                    slicing_specs=[tfma.SlicingSpec()],
                                    threshold=threshold)])])])


def test_a_baseline_without_a_model_is_dropped_and_the_reason_recorded(
    tmp_path):
  examples = artifacts.examples(str(tmp_path / 'examples'),
                                {'test': artifacts.labelled_images(6)})
  model = artifacts.model(str(tmp_path / 'model'))  # untrained
  baseline = standard_artifacts.Model()
  baseline.uri = str(tmp_path / 'baseline')
  baseline.set_int_custom_property(names.PROP_HAS_MODEL, 0)
  evaluation = standard_artifacts.ModelEvaluation()
  evaluation.uri = str(tmp_path / 'evaluation')
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  gated_evaluator.Executor().Do(
      {'examples': [examples], 'model': [model], 'baseline_model': [baseline]},
      {'evaluation': [evaluation], 'blessing': [blessing]},
      {'eval_config': proto_utils.proto_to_json(_eval_config(1.01)),
       'example_splits': '["test"]'})
  assert blessing.get_int_custom_property(names.PROP_BLESSED) == 0
  reason = blessing.get_string_custom_property(names.PROP_REASON)
  assert reason.startswith('sparse_categorical_accuracy = ')
  assert reason.endswith('threshold: >= 1.0100')


def test_failed_thresholds_name_metric_value_and_bound():
  result = validation_result_pb2.ValidationResult()
  failure = result.metric_validations_per_slice.add().failures.add()
  failure.metric_key.name = 'sparse_categorical_accuracy'
  failure.metric_key.is_diff = True
  failure.metric_value.double_value.value = -0.05
  failure.metric_threshold.change_threshold.absolute.value = -0.01
  failure.metric_threshold.change_threshold.direction = (
      tfma.MetricDirection.HIGHER_IS_BETTER)
  assert gated_evaluator.failed_thresholds(result) == [
      'sparse_categorical_accuracy change against the baseline = -0.0500, '
      'threshold: change against the served model >= -0.0100'
  ]


def test_a_metric_that_was_not_computed_is_a_reason():
  result = validation_result_pb2.ValidationResult()
  result.missing_thresholds = True
  assert gated_evaluator.failed_thresholds(result) == [
      'a configured metric was not computed'
  ]
