"""The gate's components: a kept schema, a validator with drift and skew, a
gate.

    StatisticsGen -> CuratedSchemaGen -> DataValidator -> DataGate -> Trainer

- CuratedSchemaGen: the schema in the schema directory when there is one
  (what ImportSchemaGen does), else one inferred from this run's train
  statistics (what SchemaGen does), curated (schema.infer_schema) and written
  there for people to edit. One component for both, because a pipeline
  compiled once for Kubeflow cannot choose between two per run.
- DataValidator: TFX's ExampleValidator checks statistics against the schema
  only (tfx/components/example_validator/executor.py calls
  tfdv.validate_statistics(stats, schema)); this one also passes the last
  accepted statistics (drift) and the test split's (skew). Its output has the
  same layout (Split-<split>/SchemaDiff.pb), and `blessed` says whether the
  data may be trained on: no anomalies, or accepted on purpose. Accepted data
  becomes the next drift baseline.
- DataGate: fails the run, naming each anomaly, when it may not. A failed
  step is what stops a run before training on both LocalDagRunner and
  Kubeflow; the validator's record stays in MLMD for the summary and the
  report. The Trainer depends on the gate as a task, not through an
  artifact, so its cache key is the data's alone and an unchanged re-run
  trains nothing new.
"""
import json
import logging
import os
from typing import Dict, List

from tfx.dsl.component.experimental.annotations import (
  InputArtifact,
  OutputArtifact,
  Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import (
  ExampleAnomalies,
  ExampleStatistics,
  Schema,
)
from tfx.utils import io_utils, writer_utils

from imgcls.components.data_validation import schema as schema_lib
from imgcls.components.data_validation import store
from imgcls.components.data_validation.options import DataValidationOptions
from imgcls.contract import names, progress
from imgcls.contract.errors import UserError

# TFX's file names (example_validator/executor.py, schema_gen/executor.py).
ANOMALIES_FILE = 'SchemaDiff.pb'


class DataRefused(UserError):
  """The data has anomalies and was not accepted: nothing was trained."""

  def __init__(self, anomalies: List[Dict[str, str]]):
    self.anomalies = anomalies
    super().__init__(
        'the data was refused before training; anomalies:\n' +
        '\n'.join(f'  {line}' for line in anomaly_lines(anomalies)) +
        '\nTo train on it deliberately, pass --accept-anomalies, or edit the '
        'schema to expect it')


def anomaly_lines(anomalies: List[Dict[str, str]]) -> List[str]:
  return [f'{a["split"]} {a["feature"]}: {a["what"]}: {a["description"]}'
          for a in anomalies]


def recorded_anomalies(artifact) -> List[Dict[str, str]]:
  return json.loads(artifact.get_string_custom_property(names.PROP_ANOMALIES)
                    or '[]')


@component
def CuratedSchemaGen(  # TFX component naming
    statistics: InputArtifact[ExampleStatistics],
    schema: OutputArtifact[Schema],
    options: Parameter[str],
    state_hint: Parameter[str]) -> None:
  """The kept schema, or a new one inferred, curated and kept.

  `options`: DataValidationOptions.to_parameter(), its schema_dir resolved.
  `state_hint` (store.state_hint) only changes the cache key.
  """
  del state_hint
  validation = DataValidationOptions.from_parameter(options)
  schema_dir = validation.schema_dir
  kept = store.read_schema(schema_dir)
  inferred = kept is None
  train = schema_lib.load_split(statistics, names.TRAIN_SPLIT)
  if inferred:
    kept = schema_lib.infer_schema(train, validation)
    store.write_schema(schema_dir, kept)
    progress.warn('inferred a schema from this run\'s data: %s (edit it to '
                  'change what later data must look like)',
                  store.schema_path(schema_dir))
  else:
    added = schema_lib.added_features(kept, train, validation)
    if added:
      store.write_schema(schema_dir, kept)
      progress.warn('added %s, which this version measures, to the kept '
                    'schema %s', ', '.join(added),
                    store.schema_path(schema_dir))
  io_utils.write_pbtxt_file(os.path.join(schema.uri, names.SCHEMA_FILE), kept)
  schema.set_int_custom_property(names.PROP_SCHEMA_INFERRED, int(inferred))
  schema.set_string_custom_property(names.PROP_SCHEMA_FILE,
                                    store.schema_path(schema_dir))


@component
def DataValidator(  # TFX component naming
    statistics: InputArtifact[ExampleStatistics],
    schema: InputArtifact[Schema],
    anomalies: OutputArtifact[ExampleAnomalies],
    options: Parameter[str],
    state_hint: Parameter[str]) -> None:
  """Schema, drift and skew anomalies; `blessed` 1 when the data may train.

  `options` as CuratedSchemaGen's; `state_hint` (store.state_hint) only
  changes the cache key.
  """
  del state_hint
  validation = DataValidationOptions.from_parameter(options)
  schema_dir = validation.schema_dir
  accept_anomalies = validation.accept_anomalies
  train = schema_lib.load_split(statistics, names.TRAIN_SPLIT)
  test = schema_lib.load_split(statistics, names.TEST_SPLIT)
  previous = store.read_accepted(schema_dir)
  by_split = schema_lib.validate(
      train, test,
      io_utils.SchemaReader().read(os.path.join(schema.uri, names.SCHEMA_FILE)),
      previous)
  anomalies.split_names = artifact_utils.encode_split_names(list(by_split))
  for split, found in by_split.items():
    writer_utils.write_anomalies(
        os.path.join(artifact_utils.get_split_uri([anomalies], split),
                     ANOMALIES_FILE), found)
  if previous is not None:
    io_utils.write_bytes_file(
        os.path.join(anomalies.uri, names.PREVIOUS_STATISTICS_FILE),
        previous.SerializeToString())
  described = schema_lib.describe(by_split)
  for line in anomaly_lines(described):
    logging.warning('data anomaly: %s', line)
  passed = not described or bool(accept_anomalies)
  anomalies.set_string_custom_property(names.PROP_ANOMALIES,
                                       json.dumps(described))
  anomalies.set_int_custom_property(names.PROP_BLESSED, int(passed))
  anomalies.set_int_custom_property(names.PROP_ANOMALIES_ACCEPTED,
                                    int(bool(described and accept_anomalies)))
  anomalies.set_int_custom_property(names.PROP_HAS_PREVIOUS,
                                    int(previous is not None))
  if passed:
    store.write_accepted(schema_dir, train)


@component
def DataGate(  # TFX component naming
    anomalies: InputArtifact[ExampleAnomalies]) -> None:
  """Raises DataRefused unless the validator let the data through."""
  if anomalies.get_int_custom_property(names.PROP_BLESSED) != 1:
    raise DataRefused(recorded_anomalies(anomalies))
