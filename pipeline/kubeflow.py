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
- every step's own container, whatever the pipeline's nodes, gets CPU and
  memory requests and limits; they are set in the compiled spec, because TFX
  drops a FileBasedExampleGen's platform config (tensorflow/tfx#6146). The
  pods' other containers (Argo's `wait`) get none from KFP, so a namespace
  with a ResourceQuota needs kubernetes/admin's LimitRange as well;
- every step pulls its image with the pull secret, when one is set;
- no output name of a step begins another's (names.KFP_OUTPUT_NAMES): KFP
  downloads an input by key prefix;
- the Trainer's backup (for a retried Trainer to resume) is on the data PVC,
  not in the pipeline root, an object store TensorFlow cannot write;
- with --verify-serving, a last plain container step, `imgcls verify-push`,
  checks the version the run pushed on TF Serving and rolls it back when it
  fails (_add_serving_check);
- without --pipeline-root the spec names no root, and neither do its runs, so
  KFP's driver uses the namespace's own, the `defaultPipelineRoot` of its
  kfp-launcher ConfigMap (backend/src/v2/driver/root_dag.go); with one,
  `defaultPipelineRoot` records it, and since KFP's backend ignores that
  field (argocompiler/argo.go reads only the run's root), `submit` passes it
  with every run.

`KfpApi` talks to KFP's v2beta1 API: it checks the server's release (2.4.0
or newer, MIN_SERVER_VERSION), uploads a package (a new version when
the pipeline exists, into the namespace when there is one) and starts a run or
a recurring run, and it reads, retries and stops runs, for `imgcls retrain`.
"""
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
from typing import Dict, Iterator, List, Mapping, Optional, Tuple
import warnings

from google.protobuf import json_format
from kfp.compiler import pipeline_spec_builder
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.orchestration import data_types
import yaml

from imgcls.components.data_validation.component import (
  CuratedSchemaGen,
  DataValidator,
)
from imgcls.components.image_example_gen.component import ImageExampleGen
from imgcls.components.serving_baseline import ServingBaseline
from imgcls.components.versioned_pusher import VersionedPusher
from imgcls.contract import names
from imgcls.contract.errors import UserError
from imgcls.pipeline import pipeline as pipeline_def
from imgcls.pipeline.config import PipelineConfig
from imgcls.pipeline.kubeflow_config import (
  DATA_MOUNT,
  SERVING_MOUNT,
  KubeflowOptions,
)

DATA_ROOT_PARAMETER = 'data_root'
# TFX needs a root to compile against; nothing is written there at compile
# time (the Trainer's run_fn comes from the image, so no wheel is built), and
# the compiled spec does not name it.
_NAMESPACE_ROOT = 'minio://namespace-default-root'
GPU_RESOURCE = 'nvidia.com/gpu'
ENTRYPOINT = ('python', '-m', 'imgcls.pipeline.kubeflow_entrypoint')
_ResourceSpec = (pipeline_spec_pb2.PipelineDeploymentConfig
                 .PipelineContainerSpec.ResourceSpec)
_QUANTITY = re.compile(r'^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$')


def compile_pipeline(config: PipelineConfig, options: KubeflowOptions,
                     output: str) -> str:
  """Writes the KFP package for `config` to `output` (.yaml); returns it."""
  options = options.resolved()  # the params file's defaults, read here
  config = _with_backup_on_the_data_volume(config)
  _check(config, options)
  data_root = data_types.RuntimeParameter(
      name=DATA_ROOT_PARAMETER, ptype=str, default=config.data_root)
  tfx_pipeline = pipeline_def.create_pipeline(
      dataclasses.replace(
          config, pipeline_root=options.pipeline_root or _NAMESPACE_ROOT,
          enable_cache=False),
      data_root=data_root)
  (trainer,) = [node for node in tfx_pipeline.components
                if isinstance(node, tfx.components.Trainer)]
  job = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          display_name=config.pipeline_name,
          default_image=options.image,
          default_commands=list(ENTRYPOINT),
          use_pipeline_spec_2_1=True)).run(tfx_pipeline, write_out=False)
  spec = json_format.ParseDict(job['pipelineSpec'],
                               pipeline_spec_pb2.PipelineSpec())
  _edit_executors(spec, executor_label(spec, trainer.id), options)
  _set_parameter_defaults(spec, [data_root])
  _rename_outputs(spec)
  spec.default_pipeline_root = options.pipeline_root
  mounts = {
      ImageExampleGen: [(options.data_pvc, DATA_MOUNT)],
      # The schema directory, kept with the data (PipelineConfig.schema_dir).
      CuratedSchemaGen: [(options.data_pvc, DATA_MOUNT)],
      DataValidator: [(options.data_pvc, DATA_MOUNT)],
      # Its backup, for a retried Trainer to resume from.
      tfx.components.Trainer: [(options.data_pvc, DATA_MOUNT)],
      ServingBaseline: [(options.serving_pvc, SERVING_MOUNT)],
      VersionedPusher: [(options.serving_pvc, SERVING_MOUNT)],
  }
  platform = pipeline_spec_pb2.PlatformSpec()
  for node in tfx_pipeline.components:
    # By isinstance: with --workers the Trainer is a subclass of TFX's.
    node_mounts = next((m for cls, m in mounts.items()
                        if isinstance(node, cls)), [])
    _set_executor_config(platform, executor_label(spec, node.id),
                         _executor_config(node_mounts, options,
                                          gpus=node is trainer))
  if config.serving_check:
    (pusher,) = [node.id for node in tfx_pipeline.components
                 if isinstance(node, VersionedPusher)]
    _add_serving_check(spec, platform, config, options, pusher)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  pipeline_spec_builder.write_pipeline_spec_to_file(
      spec, 'imgcls: pipeline/pipeline.py, compiled by pipeline/kubeflow.py',
      platform, output)
  return output


def _with_backup_on_the_data_volume(config: PipelineConfig) -> PipelineConfig:
  """The Trainer's backup on the data PVC unless --backup-root says where.

  Its local default, under the pipeline root, is an object store here, which
  TensorFlow cannot write (trainer.task.backup_dir), and a retried step runs
  in a new pod: only a volume keeps the backup for the retry.
  """
  if config.training.backup_root:
    return config
  return dataclasses.replace(config, training=dataclasses.replace(
      config.training, backup_root=os.path.join(
          DATA_MOUNT, pipeline_def.TRAINER_BACKUP_DIR)))


def _check(config: PipelineConfig, options: KubeflowOptions) -> None:
  """Paths are inside the pods, under the PVC mounts; quantities parse."""
  for flag, path, mount in (('--data-root', config.data_root, DATA_MOUNT),
                            ('--schema-dir', config.schema_dir, DATA_MOUNT),
                            ('--backup-root', config.training.backup_root,
                             DATA_MOUNT),
                            ('--serving-dir', config.serving_dir,
                             SERVING_MOUNT)):
    if os.path.commonpath([mount, os.path.abspath(path)]) != mount:
      raise UserError(f'{flag} {path} is not under {mount}, where the pods '
                      'mount its PVC')
  if options.pipeline_root and not re.match(r'^(gs|s3|minio)://[^/]+',
                                           options.pipeline_root):
    raise UserError(f'--pipeline-root {options.pipeline_root}: KFP\'s launcher '
                    'stores artifacts in gs://, s3:// or minio:// buckets only')
  for flag, value in (('--trainer-cpu', options.trainer_cpu),
                      ('--trainer-memory', options.trainer_memory),
                      ('--step-cpu', options.step_cpu),
                      ('--step-memory', options.step_memory)):
    if not _QUANTITY.match(value):
      raise UserError(f'{flag} {value!r} is not a Kubernetes quantity such as '
                      '4, 500m or 16Gi')
  if options.gpus < 0:
    raise UserError('--gpus must be 0 (CPU) or more')


def _resources(cpu: str, memory: str, gpus: int = 0) -> _ResourceSpec:
  """Requests equal to limits; the GPU count when there is one.

  The string fields (KFP >= 2.4) take Kubernetes quantities as they are; the
  deprecated float ones would turn 16Gi into 16G. KFP's driver turns them into
  the pod's requests and limits (backend/src/v2/driver/driver.go,
  initPodSpecPatch). The spec has no ephemeral-storage field at all
  (pipeline_spec.proto, ResourceSpec), and the driver sets none:
  kubernetes/admin's LimitRange gives one.
  """
  spec = _ResourceSpec(
      resource_cpu_request=cpu, resource_cpu_limit=cpu,
      resource_memory_request=memory, resource_memory_limit=memory)
  if gpus:
    spec.accelerator.resource_type = GPU_RESOURCE
    spec.accelerator.resource_count = str(gpus)
  return spec


def deployment_config(
    spec: pipeline_spec_pb2.PipelineSpec
) -> pipeline_spec_pb2.PipelineDeploymentConfig:
  """The spec's executors, typed (PipelineSpec keeps them in a Struct)."""
  return json_format.ParseDict(
      json_format.MessageToDict(spec.deployment_spec),
      pipeline_spec_pb2.PipelineDeploymentConfig())


def _edit_executors(spec: pipeline_spec_pb2.PipelineSpec, trainer_label: str,
                    options: KubeflowOptions) -> None:
  """Resources for every executor; no pre-cache-check hook on any.

  Every executor of the spec, so a node added to the pipeline gets resources
  too. Set here rather than through TFX's with_platform_config, which
  FileBasedExampleGens ignore (tensorflow/tfx#6146).

  The hook is the Vertex-only driver TFX adds to FileBasedExampleGens. KFP's
  backend parses and ignores it; a backend that ran it would run TFX's
  FileBasedDriver, which does not know ImageExampleGen's data layout.
  """
  deployment = deployment_config(spec)
  for label, executor in deployment.executors.items():
    executor.container.ClearField('lifecycle')
    executor.container.resources.CopyFrom(
        _resources(options.trainer_cpu, options.trainer_memory, options.gpus)
        if label == trainer_label else
        _resources(options.step_cpu, options.step_memory))
  _store_deployment(spec, deployment)


def _store_deployment(spec: pipeline_spec_pb2.PipelineSpec,
                      deployment: pipeline_spec_pb2.PipelineDeploymentConfig
                     ) -> None:
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


def _rename_outputs(spec: pipeline_spec_pb2.PipelineSpec) -> None:
  """Outputs named so that none begins another (names.KFP_OUTPUT_NAMES)."""
  for component in spec.components.values():
    outputs = component.output_definitions.artifacts
    for tfx_name, spec_name in names.KFP_OUTPUT_NAMES.items():
      if tfx_name in outputs:
        outputs[spec_name].CopyFrom(outputs[tfx_name])
        del outputs[tfx_name]


def executor_label(spec: pipeline_spec_pb2.PipelineSpec, task: str) -> str:
  """Platform configs are keyed by executor label, not by task."""
  return spec.components[
      spec.root.dag.tasks[task].component_ref.name].executor_label


def _set_executor_config(platform: pipeline_spec_pb2.PlatformSpec, label: str,
                         config: k8s_pb2.KubernetesExecutorConfig) -> None:
  if config.ListFields():
    platform.platforms['kubernetes'].deployment_spec.executors[label].update(
        json_format.MessageToDict(config))


def _executor_config(pvc_mounts: List[Tuple[str, str]],
                     options: KubeflowOptions, gpus: bool = False
                    ) -> k8s_pb2.KubernetesExecutorConfig:
  """PVC mounts, the image pull secret, and with `gpus` the GPU node
  placement (as kfp.kubernetes's mount_pvc, set_image_pull_secrets,
  add_node_selector and add_toleration write them). KFP's driver puts the
  pull secret into the step's pod (backend/src/v2/driver/k8s.go)."""
  config = k8s_pb2.KubernetesExecutorConfig()
  for pvc, mount_path in pvc_mounts:
    mount = config.pvc_mount.add(mount_path=mount_path, constant=pvc)
    mount.pvc_name_parameter.runtime_value.constant.string_value = pvc
  if options.image_pull_secret:
    secret = config.image_pull_secret.add(
        secret_name=options.image_pull_secret)
    secret.secret_name_parameter.runtime_value.constant.string_value = (
        options.image_pull_secret)
  if gpus and options.gpus:
    if options.gpu_node_selector:
      label, value = options.gpu_node_selector
      config.node_selector.labels[label] = value
    # GPU node pools are commonly tainted so that only GPU pods land there.
    config.tolerations.add(key=GPU_RESOURCE, operator='Exists',
                           effect='NoSchedule')
  return config


# ------------------------------------------------ --verify-serving's step --

VERIFY_TASK = 'VerifyServing'
VERIFY_COMMAND = ('imgcls', 'verify-push')
_RUN_ID_INPUT = 'pipeline_run_id'
# KFP's driver replaces a task input that is exactly this constant with the
# run's ID (backend/src/v2/driver/resolve.go, resolveInputParameter), the ID
# in the URI of every output of the run (v2/metadata/client.go, GetPipeline),
# and so in the provenance of the version its Pusher published. The launcher
# then puts the input into the args (component/launcher_v2.go, getPlaceholders).
RUN_ID_PLACEHOLDER = '{{$.pipeline_job_uuid}}'


def _add_serving_check(spec: pipeline_spec_pb2.PipelineSpec,
                       platform: pipeline_spec_pb2.PlatformSpec,
                       config: PipelineConfig, options: KubeflowOptions,
                       pusher: str) -> None:
  """A plain container step after the Pusher: `imgcls verify-push` on the
  serving PVC, mounted as the Pusher mounts it.

  Not a TFX component: the check is a client of the server (clients/), which
  no component may import. It needs no artifact: the version holds its test
  images (the Pusher's warm-up requests).
  """
  label = f'{VERIFY_TASK}_executor'
  component = spec.components[VERIFY_TASK]
  component.executor_label = label
  component.input_definitions.parameters[_RUN_ID_INPUT].parameter_type = (
      pipeline_spec_pb2.ParameterType.STRING)
  task = spec.root.dag.tasks[VERIFY_TASK]
  task.task_info.name = VERIFY_TASK
  task.component_ref.name = VERIFY_TASK
  task.dependent_tasks.append(pusher)
  task.inputs.parameters[_RUN_ID_INPUT].runtime_value.constant.string_value = (
      RUN_ID_PLACEHOLDER)
  deployment = deployment_config(spec)
  container = deployment.executors[label].container
  container.image = options.image
  container.command.extend(VERIFY_COMMAND)
  container.args.extend(verify_push_args(
      config, f"{{{{$.inputs.parameters['{_RUN_ID_INPUT}']}}}}"))
  container.resources.CopyFrom(
      _resources(options.step_cpu, options.step_memory))
  _store_deployment(spec, deployment)
  _set_executor_config(platform, label, _executor_config(
      [(options.serving_pvc, SERVING_MOUNT)], options))


def verify_push_args(config: PipelineConfig, run_id: str) -> List[str]:
  """`imgcls verify-push`'s flags for what run `run_id` of `config` pushed:
  every address of the host, so that each pod behind a headless Service
  must serve the version."""
  check = config.serving_check
  return ['--model-base-path', config.model_base_path,
          '--host', check.host,
          '--rest-port', str(check.rest_port),
          '--grpc-port', str(check.grpc_port),
          '--timeout', f'{check.timeout_s:g}',
          '--every-address',
          '--pushed-by-run', run_id]


# ------------------------------------------------------------- KFP's API --

# RuntimeState values of runs that may still start steps (backend/api/
# v2beta1/run.proto): the Pusher of such a run may yet publish.
ACTIVE_STATES = frozenset({'PENDING', 'RUNNING', 'CANCELING', 'PAUSED'})
# A run that KFP has given no state yet: its workflow has not been reported
# by the persistence agent.
UNSPECIFIED = 'RUNTIME_STATE_UNSPECIFIED'
CANCELING = 'CANCELING'
SUCCEEDED = 'SUCCEEDED'
# The first KFP whose driver reads the string resource fields that
# _resources sets (resource_cpu_limit, accelerator.resource_count, ...):
# 2.3.0's reads only the deprecated float ones
# (kubeflow/pipelines@2.3.0:backend/src/v2/driver/driver.go, initPodSpecPatch).
MIN_SERVER_VERSION = (2, 4, 0)
# States that wait on word from the run's workflow: KFP writes CANCELING to
# its database before it patches the workflow
# (kubeflow/pipelines@2.16.1:backend/src/apiserver/resource/
# resource_manager.go, TerminateRun), and only the persistence agent's report
# of the workflow moves either on. A run whose workflow is gone would hold
# them for good, so they count as active only for a while after the run's
# creation (RunStatus.active_at).
_AWAITING_THE_WORKFLOW = frozenset({UNSPECIFIED, CANCELING})


@dataclasses.dataclass(frozen=True)
class RunStatus:
  run_id: str
  state: str  # a v2beta1 RuntimeState name
  error: str  # the run's error message, '' when none
  # Display names of the run's tasks that FAILED (run_details.task_details,
  # backend/api/v2beta1/run.proto): which step ended the run.
  failed_tasks: Tuple[str, ...] = ()
  # When KFP created the run (UTC), None when it does not say.
  created_at: Optional[datetime.datetime] = None

  @property
  def active(self) -> bool:
    """May still start steps: an active state, or none yet."""
    return self.state in ACTIVE_STATES or self.state == UNSPECIFIED

  def active_at(self, now: datetime.datetime, age_limit_s: float) -> bool:
    """Active, counting a run that waits on its workflow's word (no state
    yet, or CANCELING) only until `age_limit_s` after its creation."""
    if self.state not in _AWAITING_THE_WORKFLOW:
      return self.active
    return (self.created_at is None or
            (now - self.created_at).total_seconds() <= age_limit_s)


class KfpApi:
  """One connection to KFP's v2beta1 API, its failures raised as UserErrors.

  The host is where KFP's API server runs; the namespace is the user's
  (a multi-user install's profile), where pipelines, experiments and runs
  live: an API server that requires namespaced pipelines refuses shared ones
  (backend/src/apiserver/validation/namespace.go), and a single-user one
  drops the namespace (resource/resource_manager.go, ReplaceNamespace), so
  passing it is harmless there. The two are never
  mixed: kfp.Client's own `namespace` argument is where `ml-pipeline`
  runs, not the user's (see _client).

  Credentials (kfp_auth): a literal token, or a token file that kfp's
  ServiceAccountTokenVolumeCredentials re-reads on every request, as the
  kubelet renews it. Without a host, a token goes to KFP's in-cluster
  address when running in a pod, and is refused otherwise; with neither,
  kfp.Client reaches KFP through the kube context's API server.
  """

  def __init__(self, host: Optional[str], token: Optional[str] = None,
               namespace: Optional[str] = None,
               kube_context: Optional[str] = None,
               token_file: Optional[str] = None):
    auth = kfp_auth(token, token_file)
    self.host = host or auth.default_host()
    self.namespace = namespace
    self._connect = lambda: _client(self.host, auth, kube_context)

  @functools.cached_property
  def _client(self):
    """Connected on first use, so that a bad package fails before any call."""
    with self._errors():
      return self._connect()

  def submit(self, package: str, experiment: str = 'imgcls',
             run_name: Optional[str] = None,
             params: Optional[Mapping[str, str]] = None,
             cron: Optional[str] = None) -> str:
    """Uploads `package` and starts a run, or a recurring run with `cron`.

    The pipeline is uploaded under its name, or as a new version of it when
    the name exists. Returns the run's (or recurring run's) ID.
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
        # None: the run names no root, and the namespace's own is used.
        pipeline_root=pipeline_spec.default_pipeline_root or None)
    with self._errors():
      self._check_server_version()
      pipeline_id, version_id = self._upload(package, pipeline_name)
      experiment_id = self._client.create_experiment(
          experiment, namespace=self.namespace).experiment_id
      if cron:
        return self._client.create_recurring_run(
            experiment_id, pipeline_id=pipeline_id, version_id=version_id,
            cron_expression=kfp_cron(cron), max_concurrency=1,
            no_catchup=True, **job).recurring_run_id
      return self._client.run_pipeline(
          experiment_id, pipeline_id=pipeline_id, version_id=version_id,
          **job).run_id

  def run_status(self, run_id: str) -> RunStatus:
    with self._errors():
      run = self._client.get_run(run_id)
    return _status(run)

  def runs(self, pipeline_name: str) -> List[RunStatus]:
    """The pipeline's runs, newest first (the last hundred)."""
    with self._errors():
      pipeline_id = self._pipeline_id(pipeline_name)
      if pipeline_id is None:
        return []
      runs = self._client.list_runs(
          namespace=self.namespace, page_size=100,
          sort_by='created_at desc').runs or []
    return [_status(r) for r in runs
            if r.pipeline_version_reference and
            r.pipeline_version_reference.pipeline_id == pipeline_id]

  def retry(self, run_id: str) -> None:
    """KFP's own retry: the failed steps of the same run run again."""
    with self._errors():
      self._client._run_api.run_service_retry_run(run_id)

  def terminate(self, run_id: str) -> None:
    with self._errors():
      self._client.terminate_run(run_id)

  def _check_server_version(self) -> None:
    """Refuses a server older than MIN_SERVER_VERSION; one that names no
    release (a build of its own, TAG_NAME "unknown") is let through."""
    # The release is in the health answer's tag_name, which the generated
    # V2beta1GetHealthzResponse leaves out: read the JSON itself.
    answer = self._client._healthz_api.healthz_service_get_healthz(
        _preload_content=False)
    tag = str(json.loads(answer.data or b'{}').get('tag_name', ''))
    release = re.match(r'^v?(\d+)\.(\d+)\.(\d+)', tag)
    if release and tuple(map(int, release.groups())) < MIN_SERVER_VERSION:
      minimum = '.'.join(map(str, MIN_SERVER_VERSION))
      raise UserError(
          f'Kubeflow Pipelines at {self.host or "the kube context"} is '
          f'{tag}; the package needs {minimum} or newer: its step resources '
          '(the Trainer\'s GPU, CPU and memory, every step\'s requests and '
          f'limits) are the string fields that KFP reads from {minimum} on, '
          'and an older server would run every step without them')

  def _pipeline_id(self, name: str) -> Optional[str]:
    """kfp.Client.get_pipeline_id looks among shared pipelines only."""
    found = self._client.list_pipelines(
        filter=json.dumps({'predicates': [{
            'operation': 'EQUALS', 'key': 'display_name',
            'stringValue': name}]}),
        namespace=self.namespace).pipelines or []
    if len(found) > 1:
      raise UserError(f'{len(found)} pipelines named {name!r} in KFP; '
                      'delete all but one')
    return found[0].pipeline_id if found else None

  def _upload(self, package: str, name: str) -> Tuple[str, str]:
    """(pipeline ID, version ID): a new pipeline, or a new version of it."""
    with open(package, 'rb') as f:
      digest = hashlib.sha256(f.read()).hexdigest()[:8]
    version_name = f'{name}-{_now():%Y%m%d-%H%M%S}-{digest}'
    pipeline_id = self._pipeline_id(name)
    if pipeline_id:
      version = self._client.upload_pipeline_version(
          package, version_name, pipeline_id=pipeline_id)
      return pipeline_id, version.pipeline_version_id
    pipeline_id = self._client.upload_pipeline(
        package, name, namespace=self.namespace).pipeline_id
    versions = self._client.list_pipeline_versions(
        pipeline_id, page_size=1,
        sort_by='created_at desc').pipeline_versions
    return pipeline_id, versions[0].pipeline_version_id

  def _errors(self):
    return _kfp_errors(self.host)


def submit(package: str, host: Optional[str], experiment: str = 'imgcls',
           run_name: Optional[str] = None,
           params: Optional[Mapping[str, str]] = None,
           cron: Optional[str] = None, token: Optional[str] = None,
           namespace: Optional[str] = None,
           kube_context: Optional[str] = None,
           token_file: Optional[str] = None) -> str:
  """KfpApi(host, ...).submit(package, ...): the run's ID."""
  return KfpApi(host, token, namespace, kube_context, token_file).submit(
      package, experiment, run_name, params, cron)


def submit_pipeline(config: PipelineConfig, host: Optional[str],
                    options: KubeflowOptions = KubeflowOptions(),
                    api: Optional[KfpApi] = None, **submit_args) -> str:
  """Compiles `config` and submits it (see KfpApi.submit); returns the run
  ID. Through `api` when given, else through a new KfpApi(host)."""
  with tempfile.TemporaryDirectory() as tmp:
    package = compile_pipeline(config, options,
                               os.path.join(tmp, 'pipeline.yaml'))
    if api is None:
      return submit(package, host, **submit_args)
    return api.submit(package, **submit_args)


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


def _status(run) -> RunStatus:
  error = getattr(run.error, 'message', None) if run.error else None
  tasks = (run.run_details.task_details or []) if run.run_details else []
  created = run.created_at
  if isinstance(created, datetime.datetime) and created.tzinfo is None:
    created = created.replace(tzinfo=datetime.timezone.utc)
  return RunStatus(run.run_id, run.state or UNSPECIFIED,
                   error or '',
                   tuple(t.display_name for t in tasks
                         if t.state == 'FAILED' and t.display_name),
                   created if isinstance(created, datetime.datetime) else None)


def _load_package(package: str) -> pipeline_spec_pb2.PipelineSpec:
  try:
    with open(package) as f:
      return json_format.ParseDict(
          next(yaml.safe_load_all(f)), pipeline_spec_pb2.PipelineSpec(),
          ignore_unknown_fields=True)
  except (OSError, StopIteration, yaml.YAMLError, json_format.ParseError,
          TypeError) as e:
    raise UserError(f'cannot read the pipeline package {package}: {e}') from e


# Where KFP itself runs, standalone or in Kubeflow: kfp.Client's `namespace`
# argument names this namespace, not the user's. kfp builds its in-cluster
# address and its kube API proxy path from it (sdk/python/kfp/client/
# client.py, _IN_CLUSTER_DNS_NAME and _KUBE_PROXY_PATH as _load_config fills
# them in): given a profile namespace, it would call an
# `ml-pipeline` Service that does not exist there.
KFP_SYSTEM_NAMESPACE = 'kubeflow'
# kfp.Client's in-cluster address (client.py, _IN_CLUSTER_DNS_NAME) for
# KFP_SYSTEM_NAMESPACE, with its scheme.
IN_CLUSTER_HOST = f'http://ml-pipeline.{KFP_SYSTEM_NAMESPACE}.svc.cluster.local:8888'
# KFP's convention for a projected ServiceAccount token of audience
# pipelines.kubeflow.org (sdk/python/kfp/client/__init__.py): the path in
# this variable, else the default path.
TOKEN_PATH_ENV = 'KF_PIPELINES_SA_TOKEN_PATH'
DEFAULT_TOKEN_PATH = '/var/run/secrets/kubeflow/pipelines/token'


@dataclasses.dataclass(frozen=True)
class KfpAuth:
  """How requests to KFP's API are authenticated: a literal token, or a
  token file re-read on every request, or nothing (kfp's own defaults)."""
  token: Optional[str] = None
  token_file: Optional[str] = None

  def default_host(self) -> Optional[str]:
    """The host when none was given: with credentials, KFP's in-cluster
    address inside a pod; without, None (kfp.Client then goes through the
    kube context). kfp.Client itself would send a token to its own default,
    http://localhost (client.py, _load_config).
    """
    if not (self.token or self.token_file):
      return None
    if os.environ.get('KUBERNETES_SERVICE_HOST'):
      return IN_CLUSTER_HOST
    raise UserError('a KFP token needs --host (--kfp-host for retrain): '
                    'outside a cluster there is no default address to send '
                    'it to, e.g. http://localhost:8080 after `kubectl '
                    'port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`')

  def client_args(self) -> Dict[str, object]:
    """kfp.Client's arguments for these credentials."""
    if self.token:
      return {'existing_token': self.token}
    if self.token_file:
      from kfp import client
      return {'credentials':
              client.ServiceAccountTokenVolumeCredentials(self.token_file)}
    return {}


def kfp_auth(token: Optional[str], token_file: Optional[str]) -> KfpAuth:
  """A literal token, else the token file: `token_file`, else KFP's
  convention (TOKEN_PATH_ENV, else DEFAULT_TOKEN_PATH when it exists, as in
  a pod that mounts a projected token there)."""
  if token and token_file:
    raise UserError('pass a KFP token or a token file, not both')
  if token:
    return KfpAuth(token=token)
  path = token_file or os.environ.get(TOKEN_PATH_ENV) or (
      DEFAULT_TOKEN_PATH if os.path.exists(DEFAULT_TOKEN_PATH) else None)
  if not path:
    return KfpAuth()
  try:
    with open(path):
      pass
  except OSError as e:
    raise UserError(f'cannot read the KFP token file {path}: {e.strerror}; '
                    'mount a projected ServiceAccount token of audience '
                    'pipelines.kubeflow.org there') from e
  return KfpAuth(token_file=path)


def _client(host: Optional[str], auth: KfpAuth, kube_context: Optional[str]):
  """A kfp.Client that checks KFP's health once, not five times 5 s apart,
  and keeps its proxy path through a kube context."""
  import kfp

  class _Client(kfp.Client):

    def get_kfp_healthz(self, sleep_duration=5):
      del sleep_duration
      return self._healthz_api.healthz_service_get_healthz()

    def _load_config(self, *args, **kwargs):
      config = super()._load_config(*args, **kwargs)
      _keep_the_proxy_path(config)
      return config

  with warnings.catch_warnings():
    # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later"
    warnings.simplefilter('ignore', FutureWarning)
    return _Client(host=host, namespace=KFP_SYSTEM_NAMESPACE,
                   kube_context=kube_context, **auth.client_args())


def _keep_the_proxy_path(config) -> None:
  """Through the kube context, every request keeps kfp's service proxy path.

  kfp appends the path to ml-pipeline's proxy to the API server's address
  (client.py, _load_config). With a token user, the kubernetes client's
  refresh hook, which runs before every request, sets the address back to the
  bare
  server (kubernetes/config/kube_config.py, KubeConfigLoader._set_config),
  and KFP's calls would go to the API server's own /apis/v2beta1/...
  """
  hook = config.refresh_api_key_hook
  if hook is None or '/services/ml-pipeline:http/proxy/' not in config.host:
    return
  proxied = config.host

  def refresh_and_keep_the_path(configuration):
    hook(configuration)
    configuration.host = proxied

  config.refresh_api_key_hook = refresh_and_keep_the_path


@contextlib.contextmanager
def _kfp_errors(host: Optional[str]) -> Iterator[None]:
  """KFP API and connection failures as UserErrors; kfp's links to stderr."""
  import kfp_server_api
  import urllib3
  where = host or 'the kube context'
  try:
    with contextlib.redirect_stdout(sys.stderr):
      yield
  except kfp_server_api.ApiException as e:
    message = _api_message(e)
    if e.status in (401, 403) and host is None:
      raise UserError(f'Kubeflow Pipelines through the kube context refused '
                      f'the request (HTTP {e.status}): {message}; a kube '
                      'context reaches single-user KFP only, since the '
                      'Kubernetes API server drops the Authorization header '
                      'before it proxies the request, and multi-user KFP '
                      'then sees no caller: pass --host (e.g. '
                      'http://localhost:8080 after `kubectl port-forward -n '
                      'kubeflow svc/ml-pipeline-ui 8080:80`) and a token'
                      ) from e
    if e.status in (401, 403):
      raise UserError(f'Kubeflow Pipelines at {where} refused the credentials '
                      f'(HTTP {e.status}): {message}; pass a valid token '
                      '(--token, or --token-file with a ServiceAccount token '
                      'of audience pipelines.kubeflow.org whose account may '
                      'edit pipelines in the namespace)') from e
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
