"""What a pipeline run produced, read back from MLMD and the artifacts.

`imgcls run` prints a summary from it and `imgcls report` draws from it, for
the latest run or any past one.
"""
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
import numpy as np
from tfx.orchestration import metadata

from imgcls.components import gated_evaluator
from imgcls.contract import names
from imgcls.contract.errors import UserError
from imgcls.imagedata import dataset_facts

_OUTPUT = metadata_store_pb2.Event.OUTPUT


@dataclasses.dataclass
class RunResult:
  run_id: str
  artifacts: Dict[str, metadata_store_pb2.Artifact]  # by output key
  dataset: Optional[dataset_facts.DatasetFacts]  # None before ExampleGen ran
  accuracy: Optional[float]
  baseline_accuracy: Optional[float]
  baseline_version: Optional[int]
  per_class_accuracy: Dict[str, float]
  blessed: Optional[bool]
  blessing_reason: str
  contract_passed: Optional[bool]
  contract_reason: str
  pushed_version: Optional[str]
  pushed_destination: Optional[str]
  already_published: Optional[str]
  history: Dict[str, List[float]]
  # The Tuner's chosen values, when the run tuned ({} otherwise).
  hyperparameters: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # The DataValidator's verdict: None when it did not run; True when the data
  # may be trained on (no anomalies, or accepted); each anomaly found.
  data_passed: Optional[bool] = None
  data_anomalies: List[Dict[str, str]] = dataclasses.field(
      default_factory=list)
  anomalies_accepted: bool = False
  # The Evaluator's counts[actual, predicted] over the test split (None
  # when it did not run); per_class_accuracy is read off it.
  confusion_matrix: Optional[np.ndarray] = None

  @property
  def data_refused(self) -> bool:
    return self.data_passed is False

  def uri(self, key: str) -> Optional[str]:
    artifact = self.artifacts.get(key)
    return artifact.uri if artifact else None


def open_store(pipeline_root: str) -> mlmd.MetadataStore:
  path = os.path.join(pipeline_root, names.METADATA_FILE)
  if not os.path.exists(path):
    raise UserError(f'{path}: no pipeline metadata here (has `imgcls run` '
                    f'used --pipeline-root {pipeline_root}?)')
  return mlmd.MetadataStore(metadata.sqlite_metadata_connection_config(path))


def run_ids(store: mlmd.MetadataStore) -> List[str]:
  """Pipeline run IDs, oldest first."""
  runs = store.get_contexts_by_type('pipeline_run')
  return [c.name for c in sorted(runs, key=lambda c: c.create_time_since_epoch)]


def load_run(pipeline_root: str, run_id: str = 'latest') -> RunResult:
  store = open_store(pipeline_root)
  ids = run_ids(store)
  if not ids:
    raise UserError(f'{pipeline_root}: no pipeline runs recorded')
  if run_id == 'latest':
    run_id = ids[-1]
  elif run_id not in ids:
    raise UserError(f'no run {run_id!r}; runs: {", ".join(ids)}')
  context = store.get_context_by_type_and_name('pipeline_run', run_id)
  artifacts = _outputs_by_key(store, context.id)
  return _result(run_id, artifacts)


def _outputs_by_key(store, context_id: int
                   ) -> Dict[str, metadata_store_pb2.Artifact]:
  executions = store.get_executions_by_context(context_id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  keys = {
      e.artifact_id: e.path.steps[0].key
      for e in events
      if e.type == _OUTPUT and e.path.steps
  }
  return {
      keys[a.id]: a for a in store.get_artifacts_by_id(list(keys))
  }


def _prop(artifact, name: str):
  if artifact is None or name not in artifact.custom_properties:
    return None
  value = artifact.custom_properties[name]
  return value.string_value or value.int_value


def _result(run_id: str, artifacts) -> RunResult:
  examples = artifacts.get(names.ARTIFACT_EXAMPLES)
  facts = dataset_facts.read(examples.uri) if examples else None
  evaluation = artifacts.get(names.ARTIFACT_EVALUATION)
  found = (gated_evaluator.accuracies(evaluation.uri) if evaluation
           else gated_evaluator.Accuracies(None, None))
  counts = (gated_evaluator.confusion_matrix(evaluation.uri,
                                             len(facts.class_names))
            if evaluation and facts else None)
  blessing = artifacts.get(names.ARTIFACT_BLESSING)
  contract = artifacts.get(names.ARTIFACT_INFRA_BLESSING)
  pushed = artifacts.get(names.ARTIFACT_PUSHED_MODEL)
  model_run = artifacts.get(names.ARTIFACT_MODEL_RUN)
  return RunResult(
      run_id=run_id,
      artifacts=artifacts,
      dataset=facts,
      accuracy=found.candidate,
      baseline_accuracy=found.baseline,
      baseline_version=_prop(artifacts.get(names.ARTIFACT_BASELINE),
                             names.PROP_SERVING_VERSION),
      per_class_accuracy=gated_evaluator.per_class_accuracy(
          counts, facts.class_names) if counts is not None else {},
      blessed=None if blessing is None else
      _prop(blessing, names.PROP_BLESSED) == 1,
      blessing_reason=_prop(blessing, names.PROP_REASON) or '',
      contract_passed=None if contract is None else
      _prop(contract, names.PROP_BLESSED) == 1,
      contract_reason=_prop(contract, names.PROP_REASON) or '',
      pushed_version=_prop(pushed, names.PROP_PUSHED_VERSION) if _prop(
          pushed, names.PROP_PUSHED) == 1 else None,
      pushed_destination=_prop(pushed, names.PROP_PUSHED_DESTINATION) if _prop(
          pushed, names.PROP_PUSHED) == 1 else None,
      already_published=_prop(pushed, names.PROP_ALREADY_PUBLISHED),
      history=_history(model_run.uri) if model_run else {},
      hyperparameters=_hyperparameters(
          artifacts.get(names.ARTIFACT_BEST_HYPERPARAMETERS)),
      confusion_matrix=counts,
      **_data_validation(artifacts.get(names.ARTIFACT_ANOMALIES)))


def _data_validation(anomalies) -> Dict[str, Any]:
  if anomalies is None:
    return {}
  return {
      'data_passed': _prop(anomalies, names.PROP_BLESSED) == 1,
      'data_anomalies': json.loads(
          _prop(anomalies, names.PROP_ANOMALIES) or '[]'),
      'anomalies_accepted': _prop(anomalies,
                                  names.PROP_ANOMALIES_ACCEPTED) == 1,
  }


def _hyperparameters(artifact) -> Dict[str, Any]:
  """The values of the KerasTuner HyperParameters config TFX's Tuner wrote
  (tfx/components/tuner/executor.py, write_best_hyperparameters)."""
  if artifact is None:
    return {}
  path = os.path.join(artifact.uri, names.BEST_HYPERPARAMETERS_FILE)
  try:
    with open(path) as f:
      return json.load(f).get('values', {})
  except FileNotFoundError:
    return {}


def _history(model_run_uri: str) -> Dict[str, List[float]]:
  try:
    with open(os.path.join(model_run_uri, names.HISTORY_FILE)) as f:
      return json.load(f)
  except FileNotFoundError:
    return {}
