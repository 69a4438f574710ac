"""Kubeflow Pipelines: the compiled package, the step entrypoint, submitting.

There is no KFP backend here. The package is checked as kfp's own loaders
read it and as KFP 2.16.1's API server validates uploads (tests/
kfp_fake_server.py), with the pinned kfp-pipeline-spec protos. Steps are run
the way KFP 2.16.1's launcher runs them: each as its own process, with the
argv compileCmdAndArgs makes (component/launcher_v2.go), and input metadata
as it comes back from MLMD (metadata/converter.go); read from the KFP
sources, not observed on a cluster. Submitting is checked at the
protocol level: kfp.Client against a local HTTP server that answers the
v2beta1 REST calls and records them.

Each known trap of TFX on self-hosted KFP 2 has a test that shows it in what
TFX alone produces and that it is handled in what `imgcls compile` produces.
"""
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

from google.protobuf import json_format
from kfp.client import client as kfp_client
import kfp.components
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
import pytest
from tfx import v1 as tfx
from tfx.orchestration import data_types
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor
import yaml

from imgcls import cli
from imgcls.contract import names
from imgcls.contract.errors import UserError
from imgcls.pipeline import (
  kubeflow,
  kubeflow_cli,
  kubeflow_config,
  kubeflow_entrypoint,
)
from imgcls.pipeline import pipeline as pipeline_def
from imgcls.pipeline.config import PipelineConfig
from tests import images, kfp_fake_server

# Every test here compiles the pipeline into a KFP spec (TFX, TensorFlow).
pytestmark = pytest.mark.slow

IMAGE = 'registry.example.com/imgcls:1.2.3'
VALIDATION_TASKS = ('StatisticsGen', 'CuratedSchemaGen', 'DataValidator',
                    'DataGate')
TASKS = ('ImageExampleGen', *VALIDATION_TASKS, 'ServingBaseline', 'Trainer',
         'GatedEvaluator', 'SampleExamples', 'ContractCheck', 'Pusher')
ResourceSpec = (pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec
                .ResourceSpec)


def _compile(path, *flags):
  assert cli.main(['compile', '--output', str(path), *flags]) == 0
  return path


def _load(path):
  """(PipelineSpec, PlatformSpec) as kfp.Client reads a package."""
  doc = kfp_client._extract_pipeline_yaml(str(path))
  return doc.pipeline_spec, doc.platform_spec


def _k8s(platform, label):
  configs = platform.platforms['kubernetes'].deployment_spec.executors
  if label not in configs:
    return None
  return json_format.ParseDict(
      json_format.MessageToDict(configs[label]),
      k8s_pb2.KubernetesExecutorConfig())


@pytest.fixture(scope='module')
def package(tmp_path_factory):
  return _compile(tmp_path_factory.mktemp('kfp') / 'pipeline.yaml',
                  '--image', IMAGE, '--gpus', '2', '--trainer-cpu', '8',
                  '--trainer-memory', '30Gi', '--data-root', '/data/mnist')


@pytest.fixture(scope='module')
def compiled(package):
  spec, platform = _load(package)
  return spec, kubeflow.deployment_config(spec), platform


@pytest.fixture(scope='module')
def tfx_alone(tmp_path_factory):
  """What TFX's KubeflowV2DagRunner makes of the same pipeline by itself,
  with a GPU asked for the ExampleGen too."""
  root = tmp_path_factory.mktemp('tfx_root')
  config = PipelineConfig(data_root='/data', serving_dir='/serving',
                          pipeline_root=str(root))
  pipeline = pipeline_def.create_pipeline(
      config, data_root=data_types.RuntimeParameter(
          name='data_root', ptype=str, default='/data'))
  for node in pipeline.components:
    if node.id == 'ImageExampleGen':
      node.with_platform_config(ResourceSpec(
          accelerator=ResourceSpec.AcceleratorConfig(
              type='nvidia.com/gpu', count=1)))
  job = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=IMAGE)).run(pipeline, write_out=False)
  spec = json_format.ParseDict(job['pipelineSpec'],
                               pipeline_spec_pb2.PipelineSpec())
  return spec, kubeflow.deployment_config(spec), root


# ------------------------------------------------------------- the package --


def test_loads_as_a_kfp_component_and_passes_kfps_upload_checks(package):
  component = kfp.components.load_component_from_file(str(package))
  assert component.name == 'imgcls'
  assert component.component_spec.inputs['data_root'].default == '/data/mnist'
  kfp_fake_server.check_package(package.read_bytes())


def test_tasks_and_their_dependencies(compiled):
  spec, _, _ = compiled
  tasks = spec.root.dag.tasks
  assert sorted(tasks) == sorted(TASKS)
  deps = {name: set(task.dependent_tasks) for name, task in tasks.items()}
  assert deps == {
      'ImageExampleGen': set(),
      'ServingBaseline': set(),
      'StatisticsGen': {'ImageExampleGen'},
      'CuratedSchemaGen': {'StatisticsGen'},
      'DataValidator': {'StatisticsGen', 'CuratedSchemaGen'},
      'DataGate': {'DataValidator'},
      # The gate is a task dependency, not an input (pipeline.py).
      'Trainer': {'ImageExampleGen', 'DataGate'},
      'GatedEvaluator': {'ImageExampleGen', 'Trainer', 'ServingBaseline'},
      'SampleExamples': {'ImageExampleGen'},
      'ContractCheck': {'SampleExamples', 'Trainer'},
      # VersionedPusher also reads the sample (spans, warm-up images) and
      # the baseline's version, for the provenance.
      'Pusher': {'Trainer', 'GatedEvaluator', 'ContractCheck',
                 'SampleExamples', 'ServingBaseline'},
  }
  sources = {
      (name, key): (a.task_output_artifact.producer_task,
                    a.task_output_artifact.output_artifact_key)
      for name, task in tasks.items()
      for key, a in task.inputs.artifacts.items()
  }
  assert sources[('GatedEvaluator', 'baseline_model')] == ('ServingBaseline',
                                                           'baseline')
  assert sources[('GatedEvaluator', 'model')] == ('Trainer', 'model')
  assert sources[('Pusher', 'model_blessing')] == ('GatedEvaluator',
                                                   'blessing')
  assert sources[('Pusher', 'infra_blessing')] == ('ContractCheck',
                                                   'infra_blessing')
  # The Pusher records the served version; only the Evaluator reads its model.
  assert sources[('Pusher', 'baseline_model')] == ('ServingBaseline',
                                                   'served_version')


def test_the_contract_check_and_the_pusher_never_download_the_dataset(
    compiled):
  """KFP's launcher downloads every input artifact whole (launcher_v2.go:
  896-973): the steps that read a few test images get the sample, not the
  ImageExampleGen's Examples."""
  spec, _, _ = compiled
  readers = {
      (name, a.task_output_artifact.output_artifact_key)
      for name, task in spec.root.dag.tasks.items()
      for a in task.inputs.artifacts.values()
      if a.task_output_artifact.producer_task == 'ImageExampleGen'}
  assert readers == {('StatisticsGen', 'examples'), ('Trainer', 'examples'),
                     ('GatedEvaluator', 'examples'),
                     ('SampleExamples', 'examples')}
  tasks = spec.root.dag.tasks
  for name in ('ContractCheck', 'Pusher'):
    examples = tasks[name].inputs.artifacts['examples'].task_output_artifact
    assert (examples.producer_task, examples.output_artifact_key) == (
        'SampleExamples', 'sample')


def test_no_output_name_of_a_step_begins_another(compiled, tmp_path):
  """KFP lists an input by its URI as a key prefix with no trailing slash
  (objectstore/object_store.go, DownloadBlob), and a step's outputs lie side
  by side: a `model` input would also download a sibling `model_run`. Every
  node's outputs, the launcher's `executor-logs` among them, with the Tuner
  and VerifyServing too."""
  tuned, _ = _load(_compile(tmp_path / 'tuned.yaml', '--tune',
                            '--verify-serving'))
  for spec in (compiled[0], tuned):
    for name, component in spec.components.items():
      outputs = [*component.output_definitions.artifacts, 'executor-logs',
                 *component.output_definitions.parameters]
      assert not [(a, b) for a in outputs for b in outputs
                  if a != b and b.startswith(a)], name
  outputs = tuned.components[
      tuned.root.dag.tasks['Trainer'].component_ref.name].output_definitions
  assert set(outputs.artifacts) == {
      names.ARTIFACT_MODEL, names.KFP_OUTPUT_NAMES[names.ARTIFACT_MODEL_RUN]}
  assert 'Tuner' in tuned.root.dag.tasks


def test_no_resolver_or_importer_only_containers(compiled):
  # KFP's Argo backend rejects resolver executors; ServingBaseline replaces
  # TFX's usual LatestBlessedModel Resolver.
  spec, deployment, _ = compiled
  assert not any('resolver' in name.lower()
                 for name in list(spec.root.dag.tasks) + list(
                     deployment.executors))
  assert all(e.WhichOneof('spec') == 'container'
             for e in deployment.executors.values())


def test_every_step_runs_the_image_through_the_entrypoint(compiled):
  _, deployment, _ = compiled
  for executor in deployment.executors.values():
    assert executor.container.image == IMAGE
    assert tuple(executor.container.command) == kubeflow.ENTRYPOINT
  assert importlib.util.find_spec(kubeflow.ENTRYPOINT[-1])


def test_pins_are_the_backends_and_the_checks_use_them():
  pins = dict(line.strip().split('==') for line in open(
      os.path.join(os.path.dirname(__file__), '..', 'requirements.txt'))
              if line.strip().startswith(('kfp-pipeline-spec==',
                                          'kfp-server-api==')))
  assert pins == {'kfp-pipeline-spec': '2.16.1', 'kfp-server-api': '2.16.1'}
  for package, version in pins.items():
    assert importlib.metadata.version(package) == version
  # check_package parses with these protos.
  assert kfp_fake_server.pipeline_spec_pb2 is pipeline_spec_pb2


def test_every_step_has_requests_and_limits(compiled):
  # A namespace with a ResourceQuota admits no pod without them. Every
  # executor, not a list: nodes added to the pipeline are covered too.
  spec, deployment, platform = compiled
  trainer = kubeflow.executor_label(spec, 'Trainer')
  for label, executor in deployment.executors.items():
    if label != trainer:
      assert executor.container.resources == ResourceSpec(
          resource_cpu_request='1', resource_cpu_limit='1',
          resource_memory_request='4Gi', resource_memory_limit='4Gi'), label
  # KFP 2.16's ResourceSpec has no ephemeral-storage field to set: the
  # namespace's LimitRange gives it (docs/kubeflow.md). Fails when one comes.
  assert not [f for f in ResourceSpec.DESCRIPTOR.fields
              if 'storage' in f.name]
  assert deployment.executors[trainer].container.resources == ResourceSpec(
      resource_cpu_request='8', resource_cpu_limit='8',
      resource_memory_request='30Gi', resource_memory_limit='30Gi',
      accelerator=ResourceSpec.AcceleratorConfig(
          resource_type='nvidia.com/gpu', resource_count='2'))
  placement = _k8s(platform, trainer)
  assert dict(placement.node_selector.labels) == {
      'nvidia.com/gpu.present': 'true'}
  assert [(t.key, t.operator, t.effect) for t in placement.tolerations] == [
      ('nvidia.com/gpu', 'Exists', 'NoSchedule')]
  for task in TASKS:
    if task != 'Trainer':
      label = kubeflow.executor_label(spec, task)
      assert not deployment.executors[label].container.resources.HasField(
          'accelerator')
      assert not (_k8s(platform, label) or k8s_pb2.KubernetesExecutorConfig()
                 ).HasField('node_selector')


def test_resources_are_encoded_in_the_fields_kfp_reads_from_2_4(package):
  """The string quantity fields (resourceCpuLimit, ..., accelerator's
  resourceType and resourceCount), which KFP's driver reads from 2.4.0 on;
  none of the float fields that 2.3.0's read (driver.go, initPodSpecPatch),
  which would turn 16Gi into 16G. Hence submit's version check."""
  (document, _) = yaml.safe_load_all(package.read_text())
  for label, executor in document['deploymentSpec']['executors'].items():
    resources = executor['container']['resources']
    assert set(resources) - {'accelerator'} == {
        'resourceCpuRequest', 'resourceCpuLimit', 'resourceMemoryRequest',
        'resourceMemoryLimit'}, label
    assert all(isinstance(v, str) for k, v in resources.items()
               if k != 'accelerator'), label
    if 'accelerator' in resources:
      assert set(resources['accelerator']) == {'resourceType',
                                               'resourceCount'}, label
  assert kubeflow.MIN_SERVER_VERSION == (2, 4, 0)


def test_every_step_pulls_with_the_image_pull_secret(compiled, tmp_path):
  """KFP's own field for it (kubernetes_platform ImagePullSecret, as
  kfp.kubernetes.set_image_pull_secrets writes it), which the driver puts
  into the step's pod (backend/src/v2/driver/k8s.go); none by default."""
  spec, _, platform = compiled
  for label in kubeflow.deployment_config(spec).executors:
    assert not (_k8s(platform, label) or k8s_pb2.KubernetesExecutorConfig()
               ).image_pull_secret, label
  package = _compile(tmp_path / 'secret.yaml', '--image-pull-secret',
                     'regcred', '--verify-serving')
  kfp_fake_server.check_package(package.read_bytes())
  spec, platform = _load(package)
  labels = list(kubeflow.deployment_config(spec).executors)
  assert kubeflow.executor_label(spec, kubeflow.VERIFY_TASK) in labels
  for label in labels:
    (secret,) = _k8s(platform, label).image_pull_secret
    constant = secret.secret_name_parameter.runtime_value.constant
    assert secret.secret_name == constant.string_value == 'regcred', label


def test_gpus_0_trains_on_cpu_nodes(tmp_path):
  spec, platform = _load(_compile(tmp_path / 'cpu.yaml', '--gpus', '0'))
  trainer = kubeflow.executor_label(spec, 'Trainer')
  resources = kubeflow.deployment_config(spec).executors[
      trainer].container.resources
  assert not resources.HasField('accelerator')
  assert resources.resource_memory_limit == '16Gi'
  placement = _k8s(platform, trainer)
  assert not placement.HasField('node_selector') and not placement.tolerations


def test_example_gen_gets_resources_despite_tfx_ignoring_its_platform_config(
    tfx_alone, compiled):
  # tensorflow/tfx#6146: FileBasedExampleGens' container spec is built
  # without the node's platform_config; the compiled spec is edited instead.
  _, tfx_deployment, _ = tfx_alone
  assert not tfx_deployment.executors[
      'ImageExampleGen_executor'].container.HasField('resources')
  spec, deployment, platform = compiled
  label = kubeflow.executor_label(spec, 'ImageExampleGen')
  resources = deployment.executors[label].container.resources
  assert resources.resource_memory_request == '4Gi'
  assert not resources.HasField('accelerator')
  assert not _k8s(platform, label).tolerations


def test_pvcs_mounted_where_needed(compiled):
  spec, _, platform = compiled
  mounts = {}
  for task in TASKS:
    config = _k8s(platform, kubeflow.executor_label(spec, task))
    mounts[task] = [(m.pvc_name_parameter.runtime_value.constant.string_value,
                     m.constant, m.mount_path)
                    for m in (config.pvc_mount if config else [])]
  assert mounts == {
      'ImageExampleGen': [('imgcls-data', 'imgcls-data', '/data')],
      'ServingBaseline': [('imgcls-serving', 'imgcls-serving', '/serving')],
      'Pusher': [('imgcls-serving', 'imgcls-serving', '/serving')],
      # The schema directory is on the data volume.
      'CuratedSchemaGen': [('imgcls-data', 'imgcls-data', '/data')],
      'DataValidator': [('imgcls-data', 'imgcls-data', '/data')],
      # The Trainer's backup, which a retried Trainer resumes from.
      'Trainer': [('imgcls-data', 'imgcls-data', '/data')],
      'StatisticsGen': [], 'DataGate': [],
      'GatedEvaluator': [], 'SampleExamples': [], 'ContractCheck': []}
  tasks = spec.root.dag.tasks
  def constant(t, p):
    return tasks[t].inputs.parameters[p].runtime_value.constant

  assert json.loads(constant('Trainer', 'custom_config').string_value)[
      'backup_root'] == '/data/trainer-backup'
  assert constant('ServingBaseline', 'model_base_path').string_value == (
      '/serving/LenetModel')
  assert json.loads(constant('Pusher', 'push_destination').string_value) == {
      'filesystem': {'base_directory': '/serving/LenetModel'}}


def test_without_baseline_nothing_mounts_the_serving_dir_but_the_pusher(
    tmp_path):
  spec, platform = _load(_compile(tmp_path / 'nb.yaml', '--no-baseline'))
  assert 'ServingBaseline' not in spec.root.dag.tasks
  assert 'baseline_model' not in spec.root.dag.tasks[
      'GatedEvaluator'].inputs.artifacts
  assert sorted(platform.platforms['kubernetes'].deployment_spec.executors) == [
      'CuratedSchemaGen_executor', 'DataValidator_executor',
      'ImageExampleGen_executor', 'Pusher_executor', 'Trainer_executor']


def test_paths_outside_the_mounts_are_refused(tmp_path, capsys):
  for flags, message in (
      (['--data-root', '/mnt/data'], 'not under /data'),
      (['--serving-dir', '/models'], 'not under /serving'),
      (['--backup-root', '/tmp/backup'], 'not under /data'),
      (['--pipeline-root', '/pipeline'], 'gs://, s3:// or minio://'),
      (['--trainer-memory', '16 GB'], 'not a Kubernetes quantity'),
      (['--step-cpu', 'two'], 'not a Kubernetes quantity')):
    assert cli.main(['compile', '--output', str(tmp_path / 'x.yaml'),
                     *flags]) == 2
    assert message in capsys.readouterr().err
  assert not (tmp_path / 'x.yaml').exists()


def test_data_root_is_a_runtime_parameter_with_its_default(tfx_alone,
                                                           compiled):
  # TFX leaves the RuntimeParameter's default out of the PipelineSpec.
  tfx_spec, _, _ = tfx_alone
  assert not tfx_spec.root.input_definitions.parameters[
      'data_root'].HasField('default_value')
  spec, _, _ = compiled
  parameter = spec.root.input_definitions.parameters['data_root']
  assert parameter.parameter_type == (
      pipeline_spec_pb2.ParameterType.STRING)
  assert parameter.default_value.string_value == '/data/mnist'
  assert parameter.is_optional
  assert spec.root.dag.tasks['ImageExampleGen'].inputs.parameters[
      'input_base'].component_input_parameter == 'data_root'


def test_caching_off(compiled):
  spec, _, _ = compiled
  assert not any(task.caching_options.enable_cache
                 for task in spec.root.dag.tasks.values())


def test_schema_2_1_which_kfps_api_server_requires(tfx_alone, compiled,
                                                   tmp_path):
  tfx_spec, _, _ = tfx_alone
  assert tfx_spec.schema_version == '2.0.0'
  # TFX's own YAML writer cannot even write it.
  with pytest.raises(KeyError, match='parameterType'):
    kubeflow_v2_dag_runner._write_pipeline_spec_to_file(
        {'pipelineSpec': json_format.MessageToDict(tfx_spec)}, '',
        str(tmp_path / 'tfx.yaml'))
  with pytest.raises(kfp_fake_server.SpecError, match='only supports schema'):
    kfp_fake_server.check_package(
        yaml.safe_dump(json_format.MessageToDict(tfx_spec)).encode())
  assert compiled[0].schema_version == '2.1.0'


def test_no_pre_cache_check_hook(tfx_alone, compiled):
  _, tfx_deployment, _ = tfx_alone
  assert tfx_deployment.executors[
      'ImageExampleGen_executor'].container.lifecycle.HasField(
          'pre_cache_check')
  _, deployment, _ = compiled
  assert not any(e.container.HasField('lifecycle')
                 for e in deployment.executors.values())


def test_trainer_runs_its_run_fn_from_the_image_and_no_wheel_is_built(
    tfx_alone, compiled):
  _, _, tfx_root = tfx_alone
  assert not (tfx_root / '_wheels').exists()
  spec, _, _ = compiled
  parameters = spec.root.dag.tasks['Trainer'].inputs.parameters
  assert parameters['run_fn'].runtime_value.constant.string_value == (
      'imgcls.trainer.task.run_fn')
  assert 'module_path' not in parameters and 'module_file' not in parameters
  assert importlib.util.find_spec('imgcls.trainer.task')


def test_without_pipeline_root_runs_write_under_the_namespaces_own(
    package, compiled):
  # KFP's driver then takes the namespace's kfp-launcher defaultPipelineRoot,
  # the prefix its profile's credential may write (root_dag.go; sync.py).
  spec, _, _ = compiled
  assert not spec.default_pipeline_root
  assert 'minio://' not in package.read_text()


def test_a_given_pipeline_root_is_recorded(tmp_path):
  spec, _ = _load(_compile(tmp_path / 'r.yaml', '--pipeline-root',
                           'minio://mlpipeline/shared/imgcls'))
  assert spec.default_pipeline_root == 'minio://mlpipeline/shared/imgcls'


def test_cli_defaults_are_the_options_defaults():
  parser = cli.build_parser()
  args = parser.parse_args(['compile'])
  config, options = kubeflow_config.from_args(args)
  assert options == kubeflow_config.KubeflowOptions().resolved()
  assert (config.data_root, config.serving_dir) == ('/data', '/serving')


# ---------------------------------------------------- the step entrypoint --


def mlmd_round_trip(metadata):
  """Artifact metadata as KFP 2.16.1 reads it back from MLMD for the next
  step (backend/src/v2/metadata/converter.go and client.go): numbers and
  booleans become doubles, lists {"list": ...}, structs {"struct": ...}; the
  launcher adds display_name and store_session_info; a null fails it."""

  def convert(key, value):
    assert value is not None, f'{key}: null metadata fails the launcher'
    if isinstance(value, bool):
      return float(int(value))
    if isinstance(value, (int, float)):
      return float(value)
    if isinstance(value, list):
      return {'list': value}
    if isinstance(value, dict):
      return {'struct': value}
    return value

  return {'display_name': 'output',
          'store_session_info': '{"Provider":"minio"}',
          **{k: convert(k, v) for k, v in metadata.items()}}


def launcher_argv(container, executor_input):
  """compileCmdAndArgs (component/launcher_v2.go): {{$}} is the whole
  ExecutorInput as JSON, in the command and in every argument."""
  text = json.dumps(executor_input)
  argv = [a.replace('{{$}}', text)
          for a in list(container.command) + list(container.args)]
  # The steps use no other placeholder, which this model would not fill in.
  assert not any('{{$.' in a for a in argv)
  return argv


class Launcher:
  """Runs compiled steps as KFP 2.16.1's driver and launcher do.

  From backend/src/v2: output artifacts get URIs under
  <root>/<pipeline>/<run>/<task>/<salt>/ and their declared type, plus the
  launcher's own `executor-logs` (system.Artifact); the output metadata file
  lies in the task root's local path; input artifacts are rebuilt from MLMD
  without a type (empty instance_schema), their metadata converted. Each step
  runs as a process of its own. The object store is the launcher's own
  staging path, /minio/<bucket>, so its downloads and uploads are no-ops.
  `mounts` stands in for the PVCs.
  """

  def __init__(self, spec, mounts, bucket, params=None, env=None):
    self.spec = spec
    self.deployment = kubeflow.deployment_config(spec)
    self.mounts = mounts
    self.params = params or {}
    self.run_root = f'minio://{bucket}/v2/artifacts/imgcls/run-1'
    self.env = env
    self.outputs = {}  # task -> output key -> RuntimeArtifact dict, as in MLMD

  def uri(self, task, key=''):
    return os.path.join(self.run_root, task, 'salt', key).rstrip('/')

  def executor_input(self, task_name):
    task = self.spec.root.dag.tasks[task_name]
    component = self.spec.components[task.component_ref.name]
    parameters = {}
    for name, p in task.inputs.parameters.items():
      value = (self.params[p.component_input_parameter]
               if p.component_input_parameter else
               json_format.MessageToDict(p.runtime_value.constant))
      if isinstance(value, str):
        for mount, path in self.mounts.items():
          value = value.replace(mount + '/', path + '/')
      parameters[name] = value
    inputs = {}
    for name, a in task.inputs.artifacts.items():
      recorded = self.outputs[a.task_output_artifact.producer_task][
          a.task_output_artifact.output_artifact_key]
      inputs[name] = {
          'artifacts': [{**recorded, 'type': {'instanceSchema': ''}}]}
    outputs = {
        name: {'artifacts': [{
            'name': name, 'uri': self.uri(task_name, name),
            'type': json_format.MessageToDict(spec.artifact_type)}]}
        for name, spec in component.output_definitions.artifacts.items()}
    outputs['executor-logs'] = {'artifacts': [{
        'name': 'executor-logs', 'uri': self.uri(task_name, 'executor-logs'),
        'type': {'schemaTitle': 'system.Artifact'}}]}
    return {
        'inputs': {'parameterValues': parameters, 'artifacts': inputs},
        'outputs': {'artifacts': outputs, 'outputFile': os.path.join(
            kubeflow_entrypoint.to_local(self.uri(task_name)),
            'output_metadata.json')}}

  def run(self, task_name, execute=None):
    """Runs the step's command line; records its outputs as the launcher."""
    executor_input = self.executor_input(task_name)
    container = self.deployment.executors[
        kubeflow.executor_label(self.spec, task_name)].container
    argv = launcher_argv(container, executor_input)
    if execute:
      execute(argv)
    else:
      done = subprocess.run(argv, env=self.env, capture_output=True,
                            text=True, check=False)
      assert done.returncode == 0, done.stderr[-3000:]
    with open(executor_input['outputs']['outputFile']) as f:
      # A step without outputs (DataGate) reports no artifacts at all.
      reported = json.load(f).get('artifacts', {})
    self.outputs[task_name] = {}
    for key, a in executor_input['outputs']['artifacts'].items():
      if key == 'executor-logs':
        continue
      (mine,) = reported[key]['artifacts']
      # The launcher keeps a reported URI; it must be the remote one.
      assert mine['uri'] == a['artifacts'][0]['uri']
      _assert_no_local_paths(mine.get('metadata', {}))
      self.outputs[task_name][key] = {
          'name': f'{task_name}.{key}', 'uri': mine['uri'],
          'metadata': mlmd_round_trip(mine.get('metadata', {}))}
    return self.outputs[task_name]


def _assert_no_local_paths(metadata):
  local = tuple(kubeflow_entrypoint.LOCAL_ROOTS.values())
  assert not [v for v in metadata.values()
              if isinstance(v, str) and v.startswith(local)], metadata


def _in_process(command, main=kubeflow_entrypoint.main):
  """`python -m MODULE ARGS` in this process (argv[0] is the module)."""
  main(kubeflow_v2_run_executor._parse_flags(command[2:]))


def _tfx_alone(command):
  _in_process(command, kubeflow_v2_run_executor.main)


@pytest.fixture
def bucket():
  """A bucket of the launcher's staging path /minio, removed afterwards."""
  name = f'imgcls-test-{uuid.uuid4().hex[:12]}'
  local = os.path.join(kubeflow_entrypoint.LOCAL_ROOTS['minio://'], name)
  try:
    os.makedirs(local)
  except PermissionError:
    pytest.skip('needs to write /minio, the launcher\'s staging path')
  yield name
  shutil.rmtree(local, ignore_errors=True)


def _pusher_launcher(compiled, tmp_path, bucket):
  spec, _, _ = compiled
  launcher = Launcher(spec, {'/serving': str(tmp_path / 'srv')}, bucket)
  model = launcher.uri('Trainer', 'model')
  saved = os.path.join(kubeflow_entrypoint.to_local(model), 'Format-Serving')
  os.makedirs(os.path.join(saved, 'variables'))
  with open(os.path.join(saved, 'saved_model.pb'), 'wb') as f:
    f.write(b'a SavedModel')
  # VersionedPusher's optional inputs, present and empty: no test images
  # (no warm-up file), no metrics, no served model.
  for task, key in (('SampleExamples', 'sample'),
                    ('GatedEvaluator', 'evaluation')):
    os.makedirs(kubeflow_entrypoint.to_local(launcher.uri(task, key)))
  launcher.outputs = {
      'Trainer': {'model': {'name': '7', 'uri': model,
                            'metadata': mlmd_round_trip({})}},
      'SampleExamples': {'sample': {
          'name': '5', 'uri': launcher.uri('SampleExamples', 'sample'),
          'metadata': mlmd_round_trip({})}},
      'ServingBaseline': {'served_version': {
          'name': '6', 'uri': launcher.uri('ServingBaseline',
                                           'served_version'),
          'metadata': mlmd_round_trip({'has_model': 0})}},
      'GatedEvaluator': {'blessing': {
          'name': '8', 'uri': launcher.uri('GatedEvaluator', 'blessing'),
          'metadata': mlmd_round_trip({'blessed': 1, 'reason': 'passed'})},
                         'evaluation': {
          'name': '10', 'uri': launcher.uri('GatedEvaluator', 'evaluation'),
          'metadata': mlmd_round_trip({})}},
      'ContractCheck': {'infra_blessing': {
          'name': '9', 'uri': launcher.uri('ContractCheck', 'infra_blessing'),
          'metadata': mlmd_round_trip({'blessed': 1})}},
  }
  return launcher


def test_tfx_entrypoint_alone_fails_on_kfps_untyped_inputs(compiled, tmp_path,
                                                           bucket):
  launcher = _pusher_launcher(compiled, tmp_path, bucket)
  with pytest.raises(AttributeError, match="'NoneType' object has no "
                     "attribute 'get'"):
    launcher.run('Pusher', execute=_tfx_alone)


def test_tfx_entrypoint_alone_fails_on_kfps_log_output(compiled, tmp_path,
                                                       bucket):
  # ServingBaseline has no inputs; the launcher's executor-logs output is
  # typed system.Artifact, which TFX takes for a class path.
  launcher = Launcher(compiled[0], {'/serving': str(tmp_path / 'srv')},
                      bucket)
  with pytest.raises(ImportError, match='system'):
    launcher.run('ServingBaseline', execute=_tfx_alone)


def test_a_crash_at_interpreter_shutdown_does_not_fail_a_finished_step(
    compiled, tmp_path, bucket):
  # sky-uk/kfp-operator PR #1286: "pure virtual method called" at shutdown.
  # Stand-in: an exit handler that aborts the process.
  site = tmp_path / 'site'
  site.mkdir()
  (site / 'sitecustomize.py').write_text(
      'import atexit, os\natexit.register(os.abort)\n')
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [str(site), os.environ.get('PYTHONPATH', '')])}
  crashing = subprocess.run([sys.executable, '-c', 'pass'], env=env,
                            check=False)
  assert crashing.returncode != 0  # the stand-in does crash a plain exit
  launcher = Launcher(compiled[0], {'/serving': str(tmp_path / 'srv')},
                      bucket, env=env)
  assert launcher.run('ServingBaseline')['baseline']['metadata'][
      'has_model'] == 0.0


def test_each_step_runs_as_its_own_process_with_the_launchers_argv(
    compiled, tmp_path, bucket):
  launcher = _pusher_launcher(compiled, tmp_path, bucket)
  pushed = launcher.run('Pusher')['pushed_model']
  # The Pusher read the blessings' converted metadata and the Model's files
  # at the launcher's local path, and reported the remote URI.
  assert pushed['metadata']['pushed'] == 1.0
  version = tmp_path / 'srv' / 'LenetModel' / '1'
  assert pushed['metadata']['pushed_destination'] == str(version)
  assert (version / 'saved_model.pb').exists()
  # The provenance names the remote model URI, and with it the run.
  provenance = json.loads((version / names.PROVENANCE_FILE).read_text())
  assert provenance['model_uri'] == launcher.uri('Trainer', 'model')


def test_reconcile_unit():
  executor_input = json_format.ParseDict({
      'inputs': {'artifacts': {'examples': {'artifacts': [{
          'uri': 's3://b/x/examples', 'type': {'instanceSchema': ''}}]}}},
      'outputs': {'artifacts': {
          'model': {'artifacts': [{'uri': 'gs://b/x/model', 'type': {
              'instanceSchema': 'title: tfx.Model\ntype: object\n'}}]},
          'executor-logs': {'artifacts': [{
              'uri': 'gs://b/x/executor-logs',
              'type': {'schemaTitle': 'system.Artifact'}}]}}}},
      pipeline_spec_pb2.ExecutorInput())
  inputs_spec = json_format.ParseDict(
      {'artifacts': {'examples': {'artifactType': {
          'instanceSchema': 'title: tfx.Examples\ntype: object\n'}}}},
      pipeline_spec_pb2.ComponentInputsSpec())
  kubeflow_entrypoint.reconcile(executor_input, inputs_spec)
  (examples,) = executor_input.inputs.artifacts['examples'].artifacts
  assert examples.type.instance_schema.startswith('title: tfx.Examples')
  assert examples.uri == '/s3/b/x/examples'
  assert list(executor_input.outputs.artifacts) == ['model']
  assert executor_input.outputs.artifacts['model'].artifacts[0].uri == (
      '/gcs/b/x/model')
  assert kubeflow_entrypoint.to_remote('/gcs/b/x/model') == 'gs://b/x/model'


@pytest.mark.e2e
def test_every_step_runs_as_kfp_hands_it_over(tmp_path, bucket):
  """The whole compiled pipeline, step by step through the entrypoint."""
  classes = {'circle': 40, 'square': 40, 'triangle': 40}
  data = tmp_path / 'data'
  images.write_class_folders(str(data / 'train'), classes)
  images.write_class_folders(str(data / 'test'), {k: 12 for k in classes},
                             seed=1)
  # Three epochs: after one, the model is sometimes far below the gate.
  spec, _ = _load(_compile(tmp_path / 'p.yaml', '--epochs', '3',
                           '--batch-size', '32', '--min-accuracy', '0.5'))
  serving = tmp_path / 'serving'
  # The data PVC too: the schema steps and the Trainer's backup write there.
  launcher = Launcher(spec, {'/serving': str(serving), '/data': str(data)},
                      bucket, params={'data_root': str(data)})
  for task in TASKS:
    launcher.run(task)
  examples = launcher.outputs['ImageExampleGen']['examples']
  assert examples['uri'].startswith(f'minio://{bucket}/')
  assert json.loads(examples['metadata']['split_names']) == ['train', 'test']
  assert launcher.outputs['ServingBaseline']['baseline']['metadata'][
      'has_model'] == 0
  blessing = launcher.outputs['GatedEvaluator']['blessing']['metadata']
  assert blessing['blessed'] == 1
  pushed = launcher.outputs['Pusher']['pushed_model']['metadata']
  assert pushed['pushed_destination'] == str(serving / 'LenetModel' / '1')
  assert (serving / 'LenetModel' / '1' / 'saved_model.pb').exists()
  assert (data / 'schema' / names.SCHEMA_FILE).exists()
  # The Trainer's backup on the data volume is gone once training finished.
  assert not (data / 'trainer-backup').exists()


def _network_closed(argv, tmp_path):
  """The command in a network namespace of its own, with only a loopback
  (`unshare -n`, as root); where that is not allowed, in a Python whose
  sockets refuse every address but the loopback (a sitecustomize), which
  stops Python's downloads but not a child process of another language."""
  if subprocess.run(['unshare', '-n', 'true'], capture_output=True,
                    check=False).returncode == 0:
    return ['unshare', '-n', *argv]
  site = tmp_path / 'closed-network'
  site.mkdir()
  (site / 'sitecustomize.py').write_text(
      'import socket\n'
      '_connect = socket.socket.connect\n'
      'def connect(self, address):\n'
      '  if isinstance(address, tuple) and address[0] not in (\n'
      '      "127.0.0.1", "::1", "localhost"):\n'
      '    raise OSError(101, "network closed by the test")\n'
      '  return _connect(self, address)\n'
      'socket.socket.connect = connect\n')
  return ['env', f'PYTHONPATH={site}', *argv]


def test_a_resnet_compile_refuses_a_download_in_the_trainer_pod(tmp_path,
                                                                capsys):
  assert cli.main(['compile', '--output', str(tmp_path / 'x.yaml'),
                   '--model-type', 'ResnetModel']) == 2
  err = capsys.readouterr().err
  assert 'inside every Trainer pod' in err
  assert '--model-option weights=/data/weights/' in err
  assert '--model-option weights=none' in err
  assert not (tmp_path / 'x.yaml').exists()


def test_the_resnet_trainer_step_runs_with_the_network_closed(tmp_path,
                                                              bucket):
  """Its weights come with the run, on the data PVC: the ExampleGen and
  the Trainer, as compiled and as the launcher runs them, need no network."""
  data = tmp_path / 'data'
  classes = {'circle': 6, 'square': 6}
  images.write_class_folders(str(data / 'train'), classes)
  images.write_class_folders(str(data / 'test'), classes, seed=1)
  weights = data / 'weights' / 'resnet50v2_notop.h5'
  weights.parent.mkdir()
  import tensorflow as tf
  tf.keras.applications.ResNet50V2(
      include_top=False, weights=None, input_shape=(32, 32, 3),
      pooling='avg').save_weights(str(weights))
  spec, _ = _load(_compile(
      tmp_path / 'p.yaml', '--model-type', 'ResnetModel', '--model-option',
      'weights=/data/weights/resnet50v2_notop.h5', '--epochs', '1',
      '--batch-size', '4', '--gpus', '0'))
  launcher = Launcher(spec, {'/data': str(data)}, bucket,
                      params={'data_root': str(data)},
                      env={**os.environ, 'HOME': str(tmp_path / 'home')})

  def closed(argv):
    done = subprocess.run(_network_closed(argv, tmp_path), env=launcher.env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

  launcher.run('ImageExampleGen', execute=closed)
  outputs = launcher.run('Trainer', execute=closed)
  model = kubeflow_entrypoint.to_local(outputs['model']['uri'])
  assert os.path.exists(os.path.join(model, 'Format-Serving',
                                     'saved_model.pb'))
  assert not (tmp_path / 'home' / '.keras' / 'models').exists()


# -------------------------------------------------------------- submitting --


def _submit(*flags):
  return cli.main(['submit', *flags])


def test_submit_uploads_the_package_and_starts_a_run(package, kfp_server,
                                                     capsys):
  assert _submit('--host', kfp_server.host, '--package', str(package),
                 '--param', 'data_root=/data/2024-06', '--run-name',
                 'nightly', '--experiment', 'mnist') == 0
  (pipeline,) = kfp_server.pipelines
  assert pipeline['display_name'] == 'imgcls'
  assert kfp_server.uploaded(pipeline['pipeline_id']) == [package.read_bytes()]
  assert [e['display_name'] for e in kfp_server.experiments] == ['mnist']
  (run,) = kfp_server.runs
  (version,) = kfp_server.versions[pipeline['pipeline_id']]
  assert run['display_name'] == 'nightly'
  assert run['experiment_id'] == kfp_server.experiments[0]['experiment_id']
  assert run['pipeline_version_reference'] == {
      'pipeline_id': pipeline['pipeline_id'],
      'pipeline_version_id': version['pipeline_version_id']}
  # No root: KFP's driver takes the namespace's own (root_dag.go).
  assert run['runtime_config'] == {
      'parameters': {'data_root': '/data/2024-06'}}
  out = capsys.readouterr().out
  assert out == (f'run {run["run_id"]}: {kfp_server.host}/#/runs/details/'
                 f'{run["run_id"]}\n')


def test_submit_again_adds_a_version_and_a_recurring_run(package, kfp_server,
                                                         capsys):
  assert _submit('--host', kfp_server.host, '--package', str(package)) == 0
  assert _submit('--host', kfp_server.host, '--package', str(package),
                 '--recurring', '--cron', '0 3 * * *') == 0
  (pipeline,) = kfp_server.pipelines
  versions = kfp_server.versions[pipeline['pipeline_id']]
  assert len(versions) == 2
  assert 'upload_version' in ' '.join(kfp_server.calls)
  (recurring,) = kfp_server.recurring_runs
  assert recurring['pipeline_version_reference'][
      'pipeline_version_id'] == versions[1]['pipeline_version_id']
  # KFP's cron has a seconds field first: 03:00, not minute 3 of every hour.
  assert recurring['trigger'] == {'cron_schedule': {'cron': '0 0 3 * * *'}}
  assert int(recurring['max_concurrency']) == 1
  assert recurring['no_catchup'] is True
  assert recurring['mode'] == 'ENABLE'
  assert 'pipeline_root' not in recurring['runtime_config']
  assert capsys.readouterr().out.splitlines()[-1] == (
      f'recurring run {recurring["recurring_run_id"]}: {kfp_server.host}'
      f'/#/recurringrun/details/{recurring["recurring_run_id"]}')


def test_submit_compiles_when_given_no_package(kfp_server):
  assert _submit('--host', kfp_server.host, '--gpus', '0', '--image',
                 IMAGE) == 0
  (pipeline,) = kfp_server.pipelines
  (uploaded,) = kfp_server.uploaded(pipeline['pipeline_id'])
  spec = kfp_fake_server.check_package(uploaded)
  assert spec['deploymentSpec']['executors']['Trainer_executor'][
      'container']['image'] == IMAGE
  assert len(kfp_server.runs) == 1


def test_submit_sends_the_token(package):
  server = kfp_fake_server.FakeKfp(token='s3cret')
  try:
    assert _submit('--host', server.host, '--package', str(package),
                   '--token', 's3cret') == 0
    assert len(server.runs) == 1
  finally:
    server.stop()


def test_refused_credentials_fail_fast_and_clearly(package, capsys):
  server = kfp_fake_server.FakeKfp(token='s3cret')
  try:
    start = time.monotonic()
    assert _submit('--host', server.host, '--package', str(package),
                   '--token', 'wrong') == 2
    # kfp.Client alone retries its health check 5 times, 5 s apart.
    assert time.monotonic() - start < 5
  finally:
    server.stop()
  err = capsys.readouterr().err
  assert 'refused the credentials (HTTP 401)' in err
  assert 'Traceback' not in err
  assert not server.runs


def test_unreachable_host(package, capsys):
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  assert _submit('--host', f'http://127.0.0.1:{port}', '--package',
                 str(package)) == 2
  err = capsys.readouterr().err
  assert f'cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}' in err
  assert 'Traceback' not in err


def test_rejected_package(tfx_alone, kfp_server, tmp_path, capsys):
  # A package straight from TFX (schema 2.0.0) is refused by KFP's server.
  tfx_spec, _, _ = tfx_alone
  path = tmp_path / 'tfx.yaml'
  path.write_text(yaml.safe_dump(json_format.MessageToDict(tfx_spec)))
  assert _submit('--host', kfp_server.host, '--package', str(path)) == 2
  err = capsys.readouterr().err
  assert 'rejected the request (HTTP 400)' in err
  assert 'KFP only supports schema version 2.1.0' in err
  assert not kfp_server.runs


def test_unknown_parameter_and_stray_cron(package, capsys):
  assert _submit('--host', 'http://127.0.0.1:1', '--package', str(package),
                 '--param', 'data_rot=/x') == 2
  assert "unknown pipeline parameter(s) ['data_rot']" in capsys.readouterr().err
  assert _submit('--host', 'http://127.0.0.1:1', '--package', str(package),
                 '--cron', '0 3 * * *') == 2
  assert 'add --recurring' in capsys.readouterr().err


@pytest.mark.parametrize('release', ['2.3.0', 'v2.0.5', '1.8.22'])
def test_a_server_older_than_the_resource_fields_is_refused(
    package, release, capsys):
  """KFP reads the string resource fields from 2.4.0 on; an older server
  would silently run the Trainer without its GPU and every step without
  its requests and limits."""
  server = kfp_fake_server.FakeKfp(version=release)
  try:
    assert _submit('--host', server.host, '--package', str(package)) == 2
    assert not server.pipelines and not server.runs
  finally:
    server.stop()
  err = capsys.readouterr().err
  assert f'is {release}; the package needs 2.4.0 or newer' in err
  assert 'resources' in err and 'Traceback' not in err


@pytest.mark.parametrize('release', ['2.4.0', '2.16.1', 'unknown'])
def test_a_server_from_2_4_or_of_no_named_release_is_used(package, release):
  server = kfp_fake_server.FakeKfp(version=release)
  try:
    assert _submit('--host', server.host, '--package', str(package)) == 0
    assert len(server.runs) == 1
  finally:
    server.stop()


def test_kfp_cron():
  assert kubeflow.kfp_cron('30 2 * * 1-5') == '0 30 2 * * 1-5'
  assert kubeflow.kfp_cron('15 30 2 * * *') == '15 30 2 * * *'
  assert kubeflow.kfp_cron('@daily') == '@daily'
  with pytest.raises(UserError):
    kubeflow.kfp_cron('daily')


def test_default_cron_is_five_fields():
  assert kubeflow.kfp_cron(kubeflow_cli.DEFAULT_CRON) == '0 0 3 * * *'


def test_submit_into_a_namespace_where_the_server_requires_one(package):
  server = kfp_fake_server.FakeKfp(namespace_required=True)
  try:
    assert _submit('--host', server.host, '--package', str(package)) == 2
    assert not server.pipelines  # a shared pipeline is refused
    assert _submit('--host', server.host, '--package', str(package),
                   '--namespace', 'team-a') == 0
    assert _submit('--host', server.host, '--package', str(package),
                   '--namespace', 'team-a') == 0
    (pipeline,) = server.pipelines  # found again in its namespace
    assert pipeline['namespace'] == 'team-a'
    assert [r['namespace'] for r in server.runs] == ['team-a', 'team-a']
  finally:
    server.stop()


def test_a_given_pipeline_root_goes_with_every_run(kfp_server, tmp_path):
  package = _compile(tmp_path / 'r.yaml', '--pipeline-root',
                     'minio://mlpipeline/shared/imgcls')
  assert _submit('--host', kfp_server.host, '--package', str(package)) == 0
  assert kfp_server.runs[0]['runtime_config']['pipeline_root'] == (
      'minio://mlpipeline/shared/imgcls')


def test_metadata_is_unwrapped_on_the_way_in_and_recordable_on_the_way_out(
    tmp_path):
  executor_input = json_format.ParseDict({'inputs': {'artifacts': {'x': {
      'artifacts': [{'uri': 'minio://b/x', 'metadata': mlmd_round_trip(
          {'names': ['a', 'b'], 'info': {'k': 1}})}]}}}},
      pipeline_spec_pb2.ExecutorInput())
  kubeflow_entrypoint.reconcile(executor_input,
                                pipeline_spec_pb2.ComponentInputsSpec())
  metadata = json_format.MessageToDict(
      executor_input.inputs.artifacts['x'].artifacts[0].metadata)
  assert (metadata['names'], metadata['info']) == (['a', 'b'], {'k': 1})
  output_file = tmp_path / 'output_metadata.json'
  output_file.write_text(json.dumps({'artifacts': {'blessing': {'artifacts': [{
      'uri': '/minio/b/run/blessing', 'metadata': {
          'current_model': '/minio/b/run/model', 'baseline': None}}]}}}))
  kubeflow_entrypoint.restore_remote_uris(str(output_file))
  (blessing,) = json.loads(output_file.read_text())['artifacts']['blessing'][
      'artifacts']
  assert blessing == {'uri': 'minio://b/run/blessing',
                      'metadata': {'current_model': 'minio://b/run/model'}}
