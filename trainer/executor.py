"""TFX's Trainer, trained by N replicas of its own executor.

The Trainer node's executor does not train: it starts N replicas of TFX's
Trainer executor (tensorflow/tfx@v1.21.0: tfx/components/trainer/
executor.py, GenericExecutor), each run as TFX's Vertex training runs one in
every worker pool, `python -m tfx.scripts.run_executor` (tfx/extensions/
google_cloud_ai_platform/training_clients.py, _CONTAINER_COMMAND), with the
same artifacts and properties, and its TF_CONFIG. run_fn trains as one of
them (trainer/task.py). In a Kubeflow step they are the pods of an Indexed
Job (trainer/job_replicas.py); elsewhere, processes on this machine
(trainer/local_replicas.py).
"""
import base64
import json
import sys
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.components import Trainer
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils

from imgcls.trainer import job_replicas, local_replicas
from imgcls.trainer.config import TrainingConfig

ArtifactDict = Dict[str, List[types.Artifact]]
Uris = Dict[str, List[str]]
REPLICA_EXECUTOR = 'tfx.components.trainer.executor.GenericExecutor'


def workers(exec_properties: Dict[str, Any]) -> int:
  """The replicas the Trainer's custom_config asks for."""
  config = json.loads(exec_properties.get(
      standard_component_specs.CUSTOM_CONFIG_KEY) or 'null')
  return TrainingConfig.from_custom_config(config).workers


def replica_command(input_dict: ArtifactDict, output_dict: ArtifactDict,
                    exec_properties: Dict[str, Any],
                    input_uris: Optional[Uris] = None,
                    output_uris: Optional[Uris] = None) -> List[str]:
  """What every replica runs: this execution, by TFX's own executor; with
  `*_uris`, its artifacts where the replicas find them instead."""
  return [
      sys.executable, '-m', 'tfx.scripts.run_executor',
      '--executor_class_path', REPLICA_EXECUTOR,
      '--inputs-base64', _base64(_artifacts_json(input_dict, input_uris)),
      '--outputs-base64', _base64(_artifacts_json(output_dict, output_uris)),
      '--exec-properties-base64', _base64(json.dumps(exec_properties)),
  ]


def _artifacts_json(artifacts: ArtifactDict, uris: Optional[Uris]) -> str:
  """As tfx.scripts.run_executor parses them (artifact_utils)."""
  parsed = json.loads(artifact_utils.jsonify_artifact_dict(artifacts))
  for key, uris_of_key in (uris or {}).items():
    for artifact, uri in zip(parsed[key], uris_of_key):
      artifact['artifact']['uri'] = uri
  return json.dumps(parsed)


def _base64(text: str) -> str:
  return base64.b64encode(text.encode()).decode()


def _log_line(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


class Executor(trainer_executor.GenericExecutor):
  """GenericExecutor itself for one worker; N replicas of it for more."""

  def Do(self, input_dict: ArtifactDict, output_dict: ArtifactDict,
         exec_properties: Dict[str, Any]) -> None:
    count = workers(exec_properties)
    if count <= 1:
      super().Do(input_dict, output_dict, exec_properties)
      return
    self._log_startup(input_dict, output_dict, exec_properties)
    if job_replicas.in_kubeflow_step():
      job_replicas.run_from_step(
          count, lambda inputs, outputs: replica_command(
              input_dict, output_dict, exec_properties, inputs, outputs),
          input_dict, output_dict, _log_line)
    else:
      local_replicas.run(
          replica_command(input_dict, output_dict, exec_properties), count)
    # The check GenericExecutor.Do makes after run_fn.
    serving_model_dir = path_utils.serving_model_dir(
        artifact_utils.get_single_uri(
            output_dict[standard_component_specs.MODEL_KEY]))
    if not fileio.exists(serving_model_dir):
      raise RuntimeError('run_fn failed to generate model.')


class ReplicatedTrainer(Trainer):
  """TFX's Trainer, whose training runs as replicas (custom_config's
  `workers`); the pipeline names it Trainer all the same."""
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
