"""The pipeline definition, shared by LocalDagRunner and Kubeflow Pipelines.

    ImageExampleGen -> StatisticsGen -> CuratedSchemaGen -> DataValidator
                    -> DataGate -> [Tuner, with --tune] -> Trainer
                    -> GatedEvaluator (against ServingBaseline)
                    -> SampleExamples -> ContractCheck -> Pusher (versioned,
                       atomic; the sample's warm-up images)

No Resolver node: self-hosted Kubeflow Pipelines cannot run one, so the
baseline is the model the serving directory publishes (ServingBaseline).
"""
import dataclasses
import os
from typing import Optional, Union

import tensorflow_model_analysis as tfma

# Not tfx.v1: importing it imports tfx.v1.extensions, and with it the Google
# Cloud AI Platform client (google.cloud.aiplatform), which no step of a
# local or Kubeflow run uses, and costs every run's start-up seconds (python
# -X importtime). The same classes, from their own modules.
from tfx.components import StatisticsGen, Trainer, Tuner
from tfx.orchestration import data_types
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import trainer_pb2

from imgcls.components import versioned_pusher
from imgcls.components.contract_check import ContractCheck
from imgcls.components.data_validation import component as data_validation
from imgcls.components.data_validation import schema as validation_schema
from imgcls.components.data_validation import store as validation_store
from imgcls.components.gated_evaluator import GatedEvaluator
from imgcls.components.image_example_gen.component import ImageExampleGen
from imgcls.components.sample_examples import SampleExamples
from imgcls.components.serving_baseline import ServingBaseline
from imgcls.contract import names
from imgcls.pipeline.config import PipelineConfig
from imgcls.trainer.config import TrainingConfig
from imgcls.trainer.executor import ReplicatedTrainer

# By import path: the environment and the image install the project, so TFX
# needs no module file and builds no per-run wheel of one
# (tfx/components/trainer/component.py, run_fn).
TRAINER_RUN_FN = 'imgcls.trainer.task.run_fn'
TUNER_FN = 'imgcls.trainer.task.tuner_fn'
# Under the pipeline root: where an interrupted Trainer's backup waits for
# the retry (trainer.task.backup_dir), removed once training has finished.
TRAINER_BACKUP_DIR = 'trainer-backup'


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
  """Accuracy, gated by a floor and by no regression against the baseline,
  and a confusion matrix, on the whole test split. Per-class accuracy is read
  off the confusion matrix (gated_evaluator.per_class_accuracy): a slice per
  label name would compute the same numbers at twice TFMA's cost."""
  threshold = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(
          lower_bound={'value': config.min_accuracy}),
      change_threshold=tfma.GenericChangeThreshold(
          direction=tfma.MetricDirection.HIGHER_IS_BETTER,
          absolute={'value': -config.max_accuracy_drop}))
  return tfma.EvalConfig(
      model_specs=[
          tfma.ModelSpec(
              # What TFMA finds anyway (the Evaluator logs tf_generic), but
              # only after trying to load the SavedModel as a Keras model,
              # which fails for it: declared, that load is skipped
              # (tensorflow_model_analysis/utils/model_util.py,
              # get_model_type).
              model_type=tfma.TF_GENERIC,
              signature_name=names.SERVING_EXAMPLES,
              label_key=names.LABEL_KEY,
              prediction_key=names.PROBABILITIES_OUTPUT)
      ],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[
          tfma.MetricsSpec(metrics=[
              tfma.MetricConfig(class_name='ExampleCount'),
              tfma.MetricConfig(class_name='SparseCategoricalAccuracy',
                                threshold=threshold),
              tfma.MetricConfig(class_name='MultiClassConfusionMatrixPlot'),
          ])
      ])


def _data_validation(config: PipelineConfig, example_gen) -> list:
  """StatisticsGen -> CuratedSchemaGen -> DataValidator -> DataGate, on
  both splits; the schema directory stands in for a Resolver (see
  components/data_validation)."""
  options = dataclasses.replace(config.data_validation,
                                schema_dir=config.schema_dir).to_parameter()
  hint = validation_store.state_hint(config.schema_dir)
  statistics = StatisticsGen(
      examples=example_gen.outputs['examples'],
      stats_options=validation_schema.statistics_options())
  schema = data_validation.CuratedSchemaGen(
      statistics=statistics.outputs['statistics'], options=options,
      state_hint=hint)
  validator = data_validation.DataValidator(
      statistics=statistics.outputs['statistics'],
      schema=schema.outputs['schema'], options=options, state_hint=hint)
  gate = data_validation.DataGate(
      anomalies=validator.outputs['anomalies']).with_id(names.DATA_GATE_NODE)
  return [statistics, schema, validator, gate]


def _training_config(config: PipelineConfig) -> TrainingConfig:
  """The Trainer's settings, its backup in the pipeline root unless set."""
  return dataclasses.replace(
      config.training, backup_root=config.training.backup_root or
      os.path.join(config.pipeline_root, TRAINER_BACKUP_DIR))


def _tuner(config: PipelineConfig, training: TrainingConfig,
           example_gen) -> Optional[Tuner]:
  """TFX's Tuner on the Trainer's splits (tfx/components/tuner/
  component.py), when tuning; its custom_config is the Trainer's and the
  number of trials."""
  if not config.tune:
    return None
  return Tuner(
      tuner_fn=TUNER_FN,
      examples=example_gen.outputs['examples'],
      train_args=trainer_pb2.TrainArgs(splits=['train']),
      eval_args=trainer_pb2.EvalArgs(splits=['test']),
      custom_config={**training.to_custom_config(),
                     names.TUNE_TRIALS_KEY: config.tune_trials})


def create_pipeline(
    config: PipelineConfig,
    data_root: Optional[Union[str, data_types.RuntimeParameter]] = None,
    published_hint: str = '',
    metadata_connection_config=None) -> tfx_pipeline.Pipeline:
  """Builds the pipeline.

  Args:
    config: every setting of the run.
    data_root: overrides config.data_root, e.g. with a Kubeflow runtime
      parameter.
    published_hint: the newest published version, so that ServingBaseline's
      cache key changes with the serving directory.
    metadata_connection_config: MLMD store for LocalDagRunner; None on
      Kubeflow.
  """
  example_gen = ImageExampleGen(
      input_base=data_root or config.data_root, options=config.example_gen)
  validation = _data_validation(config, example_gen)
  gate = validation[-1]
  training = _training_config(config)
  tuner = _tuner(config, training, example_gen)
  # With several workers, the Trainer runs its executor as replicas.
  trainer_class = ReplicatedTrainer if training.workers > 1 else Trainer
  trainer = trainer_class(
      run_fn=TRAINER_RUN_FN,
      examples=example_gen.outputs['examples'],
      hyperparameters=(tuner.outputs['best_hyperparameters'] if tuner
                       else None),
      train_args=trainer_pb2.TrainArgs(splits=['train']),
      eval_args=trainer_pb2.EvalArgs(splits=['test']),
      custom_config=training.to_custom_config()).with_id('Trainer')
  # A task dependency, not an input: the Trainer's cache key stays the data's.
  for node in (trainer, tuner):
    if node:
      node.add_upstream_node(gate)
  baseline = (ServingBaseline(
      model_base_path=config.model_base_path, published_hint=published_hint)
              if config.compare_with_baseline else None)
  evaluator = GatedEvaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=baseline.outputs['baseline'] if baseline else None,
      example_splits=['test'],
      eval_config=eval_config(config))
  # The few test images the contract check and the Pusher read, so that
  # on Kubeflow neither downloads the whole dataset (sample_examples.py).
  sample = SampleExamples(
      examples=example_gen.outputs['examples'],
      size=max(config.contract_sample_size, versioned_pusher.WARMUP_IMAGES))
  contract = ContractCheck(
      model=trainer.outputs['model'],
      examples=sample.outputs['sample'],
      sample_size=config.contract_sample_size)
  pusher = versioned_pusher.VersionedPusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      infra_blessing=contract.outputs['infra_blessing'],
      base_directory=config.model_base_path,
      keep_versions=config.keep_versions,
      examples=sample.outputs['sample'],
      evaluation=evaluator.outputs['evaluation'],
      # The served version's number, without its SavedModel.
      baseline_model=baseline.outputs['served_version'] if baseline else None
  ).with_id('Pusher')
  components = [example_gen, *validation, tuner, trainer, baseline, evaluator,
                sample, contract, pusher]
  return tfx_pipeline.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=[c for c in components if c is not None],
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(config.beam_args))
