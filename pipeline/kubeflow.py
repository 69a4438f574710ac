"""Running the pipeline on Kubeflow Pipelines 2 (self-hosted): compile, submit.

`compile_pipeline` turns the one pipeline definition (pipeline.create_pipeline)
into the KFP 2 package that `kfp.Client` uploads: a YAML PipelineSpec plus a
Kubernetes PlatformSpec (PVC mounts, GPU node selection), the two documents
kfp's own compiler writes. TFX's KubeflowV2DagRunner targets Vertex AI, so its
spec is adjusted for KFP's own backend (read against the KFP 2.16.1 sources):

- schema 2.1.0: the API server rejects any other schemaVersion;
- each step runs pipeline.kubeflow_entrypoint, which reconciles what KFP's
  launcher hands over with what TFX's executor entrypoint expects;
- no `lifecycle.preCacheCheck` hook on the ExampleGen: KFP never runs it, and
  ImageExampleGen's executor resolves the data layout itself;
- the `data_root` runtime parameter gets its default in the spec, where TFX
  leaves it out;
- no task caching: KFP's cache keys on inputs and parameters, so it cannot see
  new files on the data PVC, and ServingBaseline must read the serving
  directory every run;
- the Trainer imports `trainer.task` from the image instead of a wheel TFX
  would build into <pipeline root>/_wheels at compile time;
- `defaultPipelineRoot` records the pipeline root; KFP's backend ignores that
  field, so `submit` passes it with every run.

`submit` uploads a package (a new version when the pipeline exists) and starts
a run or a recurring run.
"""
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import re
import sys
import tempfile
import warnings
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

from google.protobuf import json_format
from kfp.compiler import pipeline_spec_builder
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.orchestration import data_types
from tfx.types import standard_component_specs
import yaml

from components.image_example_gen.component import ImageExampleGen
from components.serving_baseline import ServingBaseline
from contract.errors import UserError
from pipeline import pipeline as pipeline_def
from pipeline.config import PipelineConfig
from pipeline.kubeflow_config import DATA_MOUNT
from pipeline.kubeflow_config import KubeflowOptions
from pipeline.kubeflow_config import SERVING_MOUNT

DATA_ROOT_PARAMETER = 'data_root'
GPU_RESOURCE = 'nvidia.com/gpu'
ENTRYPOINT = ('python', '-m', 'pipeline.kubeflow_entrypoint')
_ResourceSpec = (pipeline_spec_pb2.PipelineDeploymentConfig
                 .PipelineContainerSpec.ResourceSpec)
_QUANTITY = re.compile(r'^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$')


def compile_pipeline(config: PipelineConfig, options: KubeflowOptions,
                     output: str) -> str:
  """Writes the KFP package for `config` to `output` (.yaml); returns it."""
  _check(config, options)
  data_root = data_types.RuntimeParameter(
      name=DATA_ROOT_PARAMETER, ptype=str, default=config.data_root)
  tfx_pipeline = pipeline_def.create_pipeline(
      dataclasses.replace(config, pipeline_root=options.pipeline_root,
                          enable_cache=False),
      data_root=data_root)
  (trainer,) = [node for node in tfx_pipeline.components
                if isinstance(node, tfx.components.Trainer)]
  trainer.with_platform_config(_trainer_resources(options))
  job = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          display_name=config.pipeline_name,
          default_image=options.image,
          default_commands=list(ENTRYPOINT),
          use_pipeline_spec_2_1=True)).run(tfx_pipeline, write_out=False)
  spec = json_format.ParseDict(job['pipelineSpec'],
                               pipeline_spec_pb2.PipelineSpec())
  _strip_pre_cache_checks(spec)
  _set_parameter_defaults(spec, [data_root])
  spec.default_pipeline_root = options.pipeline_root
  mounts = {
      ImageExampleGen: [(options.data_pvc, DATA_MOUNT)],
      ServingBaseline: [(options.serving_pvc, SERVING_MOUNT)],
      tfx.components.Pusher: [(options.serving_pvc, SERVING_MOUNT)],
  }
  platform = pipeline_spec_pb2.PlatformSpec()
  for node in tfx_pipeline.components:
    executor_config = _executor_config(
        mounts.get(type(node), []), options if node is trainer else None)
    if executor_config.ListFields():
      platform.platforms['kubernetes'].deployment_spec.executors[
          executor_label(spec, node.id)].update(
              json_format.MessageToDict(executor_config))
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  pipeline_spec_builder.write_pipeline_spec_to_file(
      spec, 'imgcls: pipeline/pipeline.py, compiled by pipeline/kubeflow.py',
      platform, output)
  return output


def _check(config: PipelineConfig, options: KubeflowOptions) -> None:
  """Paths are inside the pods, under the PVC mounts; quantities parse."""
  for flag, path, mount in (('--data-root', config.data_root, DATA_MOUNT),
                            ('--serving-dir', config.serving_dir,
                             SERVING_MOUNT)):
    if os.path.commonpath([mount, os.path.abspath(path)]) != mount:
      raise UserError(f'{flag} {path} is not under {mount}, where the pods '
                      'mount its PVC')
  if not re.match(r'^(gs|s3|minio)://[^/]+', options.pipeline_root):
    raise UserError(f'--pipeline-root {options.pipeline_root}: KFP\'s launcher '
                    'stores artifacts in gs://, s3:// or minio:// buckets only')
  for flag, value in (('--trainer-cpu', options.trainer_cpu),
                      ('--trainer-memory', options.trainer_memory)):
    if not _QUANTITY.match(value):
      raise UserError(f'{flag} {value!r} is not a Kubernetes quantity such as '
                      '4, 500m or 16Gi')
  if options.gpus < 0:
    raise UserError('--gpus must be 0 (CPU) or more')


def _trainer_resources(options: KubeflowOptions) -> _ResourceSpec:
  """Requests equal to limits; the GPU count when there is one.

  The string fields (KFP >= 2.4) take Kubernetes quantities as they are; the
  deprecated float ones would turn 16Gi into 16G.
  """
  spec = _ResourceSpec(
      resource_cpu_request=options.trainer_cpu,
      resource_cpu_limit=options.trainer_cpu,
      resource_memory_request=options.trainer_memory,
      resource_memory_limit=options.trainer_memory)
  if options.gpus:
    spec.accelerator.resource_type = GPU_RESOURCE
    spec.accelerator.resource_count = str(options.gpus)
  return spec


def deployment_config(
    spec: pipeline_spec_pb2.PipelineSpec
) -> pipeline_spec_pb2.PipelineDeploymentConfig:
  """The spec's executors, typed (PipelineSpec keeps them in a Struct)."""
  return json_format.ParseDict(
      json_format.MessageToDict(spec.deployment_spec),
      pipeline_spec_pb2.PipelineDeploymentConfig())


def _strip_pre_cache_checks(spec: pipeline_spec_pb2.PipelineSpec) -> None:
  """Drops the Vertex-only driver hook TFX adds to FileBasedExampleGens.

  KFP's backend parses and ignores it; a backend that ran it would run TFX's
  FileBasedDriver, which does not know ImageExampleGen's data layout.
  """
  deployment = deployment_config(spec)
  for executor in deployment.executors.values():
    executor.container.ClearField('lifecycle')
  spec.deployment_spec.Clear()
  spec.deployment_spec.update(json_format.MessageToDict(deployment))


def _set_parameter_defaults(spec: pipeline_spec_pb2.PipelineSpec,
                            parameters: List[data_types.RuntimeParameter]
                           ) -> None:
  """TFX leaves the parameters' defaults out of the spec."""
  for parameter in parameters:
    definition = spec.root.input_definitions.parameters[parameter.name]
    definition.default_value.string_value = parameter.default
    definition.is_optional = True


def executor_label(spec: pipeline_spec_pb2.PipelineSpec, task: str) -> str:
  """Platform configs are keyed by executor label, not by task."""
  return spec.components[
      spec.root.dag.tasks[task].component_ref.name].executor_label


def _executor_config(pvc_mounts: List[Tuple[str, str]],
                     gpu_options: Optional[KubeflowOptions]
                    ) -> k8s_pb2.KubernetesExecutorConfig:
  """PVC mounts, and GPU node placement for the Trainer (as kfp.kubernetes's
  mount_pvc, add_node_selector and add_toleration write them)."""
  config = k8s_pb2.KubernetesExecutorConfig()
  for pvc, mount_path in pvc_mounts:
    mount = config.pvc_mount.add(mount_path=mount_path, constant=pvc)
    mount.pvc_name_parameter.runtime_value.constant.string_value = pvc
  if gpu_options and gpu_options.gpus:
    if gpu_options.gpu_node_selector:
      label, value = gpu_options.gpu_node_selector
      config.node_selector.labels[label] = value
    # GPU node pools are commonly tainted so that only GPU pods land there.
    config.tolerations.add(key=GPU_RESOURCE, operator='Exists',
                           effect='NoSchedule')
  return config


# ------------------------------------------------------------------ submit --


def submit(package: str,
           host: Optional[str],
           experiment: str = 'imgcls',
           run_name: Optional[str] = None,
           params: Optional[Mapping[str, str]] = None,
           cron: Optional[str] = None,
           token: Optional[str] = None,
           namespace: Optional[str] = None,
           kube_context: Optional[str] = None) -> str:
  """Uploads `package` and starts a run, or a recurring run with `cron`.

  The pipeline is uploaded under its name, or as a new version of it when the
  name exists. Without a host, kfp.Client reaches KFP through the Kubernetes
  API server of the kube context. Returns the run's (or recurring run's) ID.
  Raises UserError when KFP cannot be reached, refuses the credentials, or
  rejects the package or the run.
  """
  pipeline_spec = _load_package(package)
  pipeline_name = pipeline_spec.pipeline_info.name
  params = dict(params or {})
  known = sorted(pipeline_spec.root.input_definitions.parameters)
  unknown = sorted(set(params) - set(known))
  if unknown:
    raise UserError(f'unknown pipeline parameter(s) {unknown}; the pipeline '
                    f'has {known}')
  job = dict(
      job_name=run_name or f'{pipeline_name} {_now():%Y-%m-%d %H:%M:%S}',
      params=params,
      pipeline_root=pipeline_spec.default_pipeline_root or None)
  with _kfp_errors(host):
    client = _client(host, token, namespace, kube_context)
    pipeline_id, version_id = _upload(client, package, pipeline_name)
    experiment_id = client.create_experiment(experiment).experiment_id
    if cron:
      return client.create_recurring_run(
          experiment_id, pipeline_id=pipeline_id, version_id=version_id,
          cron_expression=kfp_cron(cron), max_concurrency=1, no_catchup=True,
          **job).recurring_run_id
    return client.run_pipeline(
        experiment_id, pipeline_id=pipeline_id, version_id=version_id,
        **job).run_id


def submit_pipeline(config: PipelineConfig, host: Optional[str],
                    options: KubeflowOptions = KubeflowOptions(),
                    **submit_args) -> str:
  """Compiles `config` and submits it (see submit); returns the run ID."""
  with tempfile.TemporaryDirectory() as tmp:
    return submit(
        compile_pipeline(config, options, os.path.join(tmp, 'pipeline.yaml')),
        host, **submit_args)


def run_url(host: str, run_id: str, recurring: bool = False) -> str:
  page = 'recurringrun' if recurring else 'runs'
  return f'{host.rstrip("/")}/#/{page}/details/{run_id}'


def kfp_cron(expression: str) -> str:
  """A cron expression as KFP reads it: with a leading seconds field.

  KFP parses schedules with robfig/cron v1's Parse, whose first field is
  seconds; the usual five fields would be taken as seconds..months, so
  `0 3 * * *` would run at minute 3 of every hour.
  """
  fields = expression.split()
  if len(fields) == 5:
    return ' '.join(['0'] + fields)
  if len(fields) == 6 or (len(fields) == 1 and fields[0].startswith('@')):
    return ' '.join(fields)
  raise UserError(f'--cron {expression!r}: expected five fields (minute hour '
                  'day month weekday), six with seconds first, or @daily and '
                  'the like')


def _now() -> datetime.datetime:
  return datetime.datetime.now(datetime.timezone.utc)


def _load_package(package: str) -> pipeline_spec_pb2.PipelineSpec:
  try:
    with open(package) as f:
      return json_format.ParseDict(
          next(yaml.safe_load_all(f)), pipeline_spec_pb2.PipelineSpec(),
          ignore_unknown_fields=True)
  except (OSError, StopIteration, yaml.YAMLError, json_format.ParseError,
          TypeError) as e:
    raise UserError(f'cannot read the pipeline package {package}: {e}') from e


def _client(host, token, namespace, kube_context):
  """A kfp.Client that checks KFP's health once, not five times 5 s apart."""
  import kfp  # pylint: disable=g-import-not-at-top

  class _Client(kfp.Client):

    def get_kfp_healthz(self, sleep_duration=5):
      del sleep_duration
      return self._healthz_api.healthz_service_get_healthz()

  with warnings.catch_warnings():
    # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later"
    warnings.simplefilter('ignore', FutureWarning)
    return _Client(host=host, existing_token=token,
                   namespace=namespace or 'kubeflow',
                   kube_context=kube_context)


def _upload(client, package: str, name: str) -> Tuple[str, str]:
  """(pipeline ID, version ID): a new pipeline, or a new version of it."""
  with open(package, 'rb') as f:
    digest = hashlib.sha256(f.read()).hexdigest()[:8]
  version_name = f'{name}-{_now():%Y%m%d-%H%M%S}-{digest}'
  pipeline_id = client.get_pipeline_id(name)
  if pipeline_id:
    version = client.upload_pipeline_version(
        package, version_name, pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id
  pipeline_id = client.upload_pipeline(package, name).pipeline_id
  versions = client.list_pipeline_versions(
      pipeline_id, page_size=1, sort_by='created_at desc').pipeline_versions
  return pipeline_id, versions[0].pipeline_version_id


@contextlib.contextmanager
def _kfp_errors(host: Optional[str]) -> Iterator[None]:
  """KFP API and connection failures as UserErrors; kfp's links to stderr."""
  import kfp_server_api  # pylint: disable=g-import-not-at-top
  import urllib3  # pylint: disable=g-import-not-at-top
  where = host or 'the kube context'
  try:
    with contextlib.redirect_stdout(sys.stderr):
      yield
  except kfp_server_api.ApiException as e:
    message = _api_message(e)
    if e.status in (401, 403):
      raise UserError(f'Kubeflow Pipelines at {where} refused the credentials '
                      f'(HTTP {e.status}): {message}; pass a valid --token '
                      '(e.g. a service account token) or use a kube context '
                      'that may reach it') from e
    if e.status == 0:
      raise UserError(f'cannot reach Kubeflow Pipelines at {where}: '
                      f'{e.reason}') from e
    raise UserError(f'Kubeflow Pipelines at {where} rejected the request '
                    f'(HTTP {e.status}): {message}') from e
  except (urllib3.exceptions.HTTPError, OSError) as e:
    raise UserError(f'cannot reach Kubeflow Pipelines at {where}: {e}') from e
  except ValueError as e:  # kfp.Client's word for e.g. two pipelines of a name
    raise UserError(f'Kubeflow Pipelines at {where}: {e}') from e


def _api_message(e) -> str:
  """The message of KFP's JSON error body, else the body itself."""
  try:
    body: Dict = json.loads(e.body)
  except (TypeError, ValueError):
    return (e.body or e.reason or '').strip()[:500]
  return str(body.get('message') or body.get('error_message') or
             body.get('error') or body)
