"""The kustomize trees under kubernetes/, rendered offline by kubectl.

Nothing here reaches a cluster. Every rendered object is validated against the
Kubernetes API schemas that kubernetes-validate ships (Istio's objects against
Istio 1.29.1's CRD schema), and the properties that serving relies on are
asserted on what kubectl would apply, overlays and components included: one
params file feeding every shared name, the pull secret included; probes that
reflect model availability; a shared read-only model volume that outlives the
server; batching that cannot fail good requests; availability through drains
and rollouts; the restricted security context, with no uid pinned where the
platform assigns one; GPU or autoscaling only where asked for.

On multi-user Kubeflow: who may apply what, against kubeflow/manifests'
roles as the API server aggregates them; which calls reach TF Serving, by
Istio's match rules over tensorflow-serving-api's own gRPC paths, and from
where; the LimitRange as the LimitRanger admission plugin applies it to the
containers KFP 2.16.1's compiler writes; the quota against the project's
peak; the CronJob's own command against the KFP API stand-in. What none of
this proves: that Istio, a network plugin or an API server enforce them so.
"""
import functools
import http.server
import json
import math
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import threading

from google.protobuf import text_format
import kubernetes_validate
import pytest
from tensorflow_serving.config import model_server_config_pb2
import yaml

from imgcls.contract import deployment, names

_REPO = pathlib.Path(__file__).resolve().parents[1]
_KUBERNETES = _REPO / 'kubernetes'
# A version kubernetes-validate ships schemas for, and one with GA gRPC probes
# (1.27) and CronJob time zones (1.27).
_KUBERNETES_VERSION = '1.32'
_SERVING = ('base', 'overlays/gpu', 'overlays/hpa', 'overlays/local')
_ALL = _SERVING + ('overlays/bucket', 'retrain', 'storage', 'admin')
# What a profile's owner applies (docs/kubeflow.md); `admin` is the rest.
_OWNERS = _SERVING + ('retrain', 'storage')
_PARAMS = deployment.params(str(_KUBERNETES / 'params' / 'params.env'))
_GRPC_PORT = 8500
_HTTP_PORT = 8501
_RESTRICTED = {
    'runAsNonRoot': True,
    'readOnlyRootFilesystem': True,
    'allowPrivilegeEscalation': False,
    'capabilities': {'drop': ['ALL']},
    'seccompProfile': {'type': 'RuntimeDefault'},
}

pytestmark = pytest.mark.skipif(
    shutil.which('kubectl') is None,
    reason='kubectl is not installed, so the kustomizations cannot be rendered')


def _kustomize(directory) -> list:
  result = subprocess.run(['kubectl', 'kustomize', str(directory)],
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.lru_cache(maxsize=None)
def _rendered(name: str) -> tuple:
  """Rendered once per directory: the tests only read the objects."""
  return tuple(_kustomize(_KUBERNETES / name))


def _all_of(objects, kind):
  if isinstance(objects, str):
    objects = _rendered(objects)
  return [o for o in objects if o['kind'] == kind]


def _one(objects, kind, object_name=None):
  found = [o for o in _all_of(objects, kind)
           if object_name in (None, o['metadata']['name'])]
  assert len(found) == 1, f'{kind} {object_name or ""} x{len(found)}'
  return found[0]


def _pod_spec(objects):
  return _one(objects, 'Deployment', 'tfserving')['spec']['template']['spec']


def _container(pod_spec):
  (container,) = pod_spec['containers']
  return container


def _quantity(value) -> float:
  """A Kubernetes CPU or memory quantity as a number, for comparing them."""
  number, unit = re.fullmatch(r'([\d.]+)(m|Ki|Mi|Gi)?', str(value)).groups()
  return float(number) * {None: 1, 'm': 1e-3, 'Ki': 2**10, 'Mi': 2**20,
                          'Gi': 2**30}[unit]


def _env_values(container, namespace='team-a') -> dict:
  """The container's env as the kubelet resolves it: literal values, the
  pod's namespace for a metadata.namespace fieldRef, and resourceFieldRef CPU
  as ceil(quantity / divisor) (kubernetes pkg/api/v1/resource/helpers.go,
  convertResourceCPUToString)."""
  values = {}
  for entry in container.get('env', []):
    if 'value' in entry:
      values[entry['name']] = entry['value']
      continue
    if 'fieldRef' in entry['valueFrom']:
      assert entry['valueFrom']['fieldRef']['fieldPath'] == (
          'metadata.namespace'), entry
      values[entry['name']] = namespace
      continue
    ref = entry['valueFrom']['resourceFieldRef']
    kind, _, resource = ref['resource'].partition('.')
    assert resource == 'cpu', ref
    quantity = _quantity(container['resources'][kind][resource])
    divisor = _quantity(ref.get('divisor', '1'))
    values[entry['name']] = str(math.ceil(round(quantity / divisor, 9)))
  return values


def _expand(text, env) -> str:
  """$(VAR) as the kubelet expands it in command and args (kubernetes
  third_party/forked/golang/expansion/expand.go): a defined variable is
  replaced, $$ is a literal $, anything else is left as written."""
  def replace(match):
    if match[0] == '$$':
      return '$'
    return env.get(match[1], match[0])
  return re.sub(r'\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)', replace, text)


def _args(container) -> dict:
  """`--flag=value` args, expanded, as {flag: value}; a bare `--flag` is
  'true'."""
  env = _env_values(container)
  flags = {}
  for arg in container['args']:
    assert arg.startswith('--'), arg
    key, _, value = _expand(arg, env).partition('=')
    flags[key[2:]] = value or 'true'
  return flags


def _env(container) -> dict:
  return {e['name']: e for e in container.get('env', [])}


def _mounted_file(objects, pod_spec, path) -> str:
  """The text that a container path shows, read from the ConfigMap mounted
  over its directory: proves each flag names a file that will exist."""
  directory, filename = os.path.split(path)
  (mount,) = [m for m in _container(pod_spec)['volumeMounts']
              if m['mountPath'] == directory]
  (volume,) = [v for v in pod_spec['volumes'] if v['name'] == mount['name']]
  config_map = _one(objects, 'ConfigMap', volume['configMap']['name'])
  assert filename in config_map['data'], (path, sorted(config_map['data']))
  return config_map['data'][filename]


def _model_server_config(objects):
  """models.config as TF Serving parses it: a ModelServerConfig text proto
  (protobuf's text format, which joins adjacent string literals)."""
  pod_spec = _pod_spec(objects)
  text = _mounted_file(objects, pod_spec,
                       _args(_container(pod_spec))['model_config_file'])
  return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def _batching(objects) -> dict:
  """The BatchingParameters file of the server, as {field: value}."""
  pod_spec = _pod_spec(objects)
  text = _without_comments(_mounted_file(
      objects, pod_spec,
      _args(_container(pod_spec))['batching_parameters_file']))
  fields = dict(re.findall(r'(\w+)\s*{\s*value:\s*(\w+)\s*}', text))
  fields.update(re.findall(r'^\s*(\w+):\s*(\w+)\s*$', text, re.MULTILINE))
  return {k: int(v) if v.isdigit() else v for k, v in fields.items()}


def _effective_security(pod_spec, container) -> dict:
  """Container settings override the pod's, as the kubelet applies them."""
  return {**pod_spec.get('securityContext', {}),
          **container.get('securityContext', {})}


def _without_comments(text):
  return re.sub(r'#.*', '', text)


def _probe_server(responses):
  """A stand-in for TF Serving's REST port: path -> (status, JSON body)."""

  class Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):
      status, body = responses.get(self.path, (404, {'error': 'no route'}))
      payload = json.dumps(body, indent=1).encode()
      self.send_response(status)
      self.send_header('Content-Type', 'application/json')
      self.send_header('Content-Length', str(len(payload)))
      self.end_headers()
      self.wfile.write(payload)

    def log_message(self, *args):
      del args

  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
  threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.01},
                   daemon=True).start()
  return server


def _cronjob_pod(objects='retrain'):
  cronjob = _one(objects, 'CronJob', 'imgcls-retrain')
  return cronjob, cronjob['spec']['jobTemplate']['spec']['template']['spec']


def _retrain_args(container):
  """The CronJob's command line, expanded and parsed by `imgcls` itself."""
  from imgcls import cli
  env = _env_values(container)
  return cli.build_parser().parse_args(
      [_expand(arg, env) for arg in container['args']])


def _claims(pod_spec) -> dict:
  """{mount path: claim name} of a pod's single container."""
  claims = {v['name']: v['persistentVolumeClaim']['claimName']
            for v in pod_spec['volumes'] if 'persistentVolumeClaim' in v}
  return {m['mountPath']: claims[m['name']]
          for m in _container(pod_spec)['volumeMounts'] if m['name'] in claims}


# --- Schemas ---------------------------------------------------------------


def _validate(obj) -> None:
  """Against the API server's schema: Kubernetes' own, or the CRD's."""
  if obj['kind'] == 'AuthorizationPolicy':
    _validate_authorization_policy(obj)
    return
  try:
    kubernetes_validate.validate(obj, _KUBERNETES_VERSION, strict=True)
  except kubernetes_validate.ValidationError as e:
    pytest.fail(f'{obj["kind"]}/{obj["metadata"]["name"]}: {e}')


def _validate_authorization_policy(policy) -> None:
  """Against the CRD's own schema, as the API server would (Istio 1.29.1's
  CRD as kubeflow/manifests installs it: tests/schemas/)."""
  import jsonschema
  schemas = json.loads(
      (_REPO / 'tests' / 'schemas' / 'istio-authorizationpolicy.json')
      .read_text())['versions']
  group, version = policy['apiVersion'].split('/')
  assert group == 'security.istio.io'
  jsonschema.validate(policy, {**schemas[version], 'additionalProperties':
                               True})
  # Structural schemas prune unknown fields: check none would be lost.
  spec_schema = schemas[version]['properties']['spec']['properties']
  assert set(policy['spec']) <= set(spec_schema)


@pytest.mark.parametrize('name', _ALL)
def test_every_object_is_valid_for_kubernetes(name):
  objects = _rendered(name)
  assert objects
  for obj in objects:
    _validate(obj)


# --- One params file --------------------------------------------------------


@pytest.mark.parametrize('text, expected', [
    # The cases of kustomize's api/kv/kv_test.go that an env file can hold.
    ('FOO=bar', {'FOO': 'bar'}),
    ('# comment\n\n  FOO=bar\n', {'FOO': 'bar'}),
    ('FOO=bar=baz', {'FOO': 'bar=baz'}),
    ('FOO="bar"', {'FOO': '"bar"'}),
    ('FOO=bar  ', {'FOO': 'bar  '}),
    ('FOO=', {'FOO': ''}),
    ('\ufeffFOO=bar', {'FOO': 'bar'}),
])
def test_params_are_parsed_as_kustomize_parses_env_files(text, expected):
  assert deployment.parse_env_file(text) == expected


def test_python_defaults_come_from_the_params_file():
  from imgcls.pipeline import kubeflow_config
  options = kubeflow_config.KubeflowOptions().resolved()
  assert options.image == _PARAMS['IMGCLS_IMAGE']
  assert options.data_pvc == _PARAMS['DATA_PVC']
  assert options.serving_pvc == _PARAMS['SERVING_PVC']
  assert options.gpu_node_selector == (_PARAMS['GPU_NODE_LABEL'],
                                       _PARAMS['GPU_NODE_LABEL_VALUE'])
  assert kubeflow_config.DATA_MOUNT == _PARAMS['DATA_MOUNT']
  assert kubeflow_config.SERVING_MOUNT == _PARAMS['SERVING_MOUNT']


def test_params_file_is_found_in_the_image_through_its_env_variable(tmp_path):
  """The Dockerfile copies the file in and points IMGCLS_PARAMS_FILE at it;
  the source tree's copy is the fallback."""
  dockerfile = (_REPO / 'Dockerfile').read_text()
  (copied,) = re.findall(r'^COPY (kubernetes/\S+) (\S+)$', dockerfile,
                         re.MULTILINE)
  assert _REPO / copied[0] == _KUBERNETES / 'params' / 'params.env'
  assert f'ENV {deployment.PARAMS_FILE_ENV}={copied[1]}' in dockerfile
  ignored = (_REPO / '.dockerignore').read_text().splitlines()
  # kubernetes/ is left out of the build context, but for this file.
  assert ignored.index('kubernetes') < ignored.index(f'!{copied[0]}')
  env = {**os.environ, deployment.PARAMS_FILE_ENV: str(tmp_path / 'p.env')}
  (tmp_path / 'p.env').write_text('MODEL_NAME=Elsewhere\n')
  code = ('from imgcls.contract import deployment; '
          'print(deployment.model_name())')
  result = subprocess.run(['python', '-c', code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          check=False)
  assert result.stdout.strip() == 'Elsewhere', result.stderr
  assert deployment.SOURCE_TREE_PARAMS == _KUBERNETES / 'params' / 'params.env'


_CHANGED = {
    'MODEL_NAME': 'ResnetModel',
    'SERVING_IMAGE': 'registry.example.com/tf-srv:2.21.0',
    'SERVING_GPU_IMAGE': 'registry.example.com/tf-srv:2.21.0-gpu',
    'IMGCLS_IMAGE': 'registry.example.com/imgcls:1.2.3',
    'DATA_PVC': 'other-data',
    'SERVING_PVC': 'other-serving',
    'SERVING_PODS_SERVICE': 'other-serving-pods',
    'DATA_MOUNT': '/mnt/images',
    'SERVING_MOUNT': '/mnt/models',
    'STORAGE_ACCESS_MODE': 'ReadWriteOnce',
    'GPU_NODE_LABEL': 'cloud.google.com/gke-accelerator',
    'GPU_NODE_LABEL_VALUE': 'nvidia-l4',
    'KFP_HOST': 'http://kfp.example.com:8888',
    'IMAGE_PULL_SECRET': 'private-registry',
    'TRAINER_GPUS': '0',
    'TRAINER_CPU': '8',
    'TRAINER_MEMORY': '32Gi',
}


@pytest.fixture(scope='module')
def changed(tmp_path_factory):
  """Every directory rendered from a copy of kubernetes/ whose params.env
  has a different value for every key."""
  copy = tmp_path_factory.mktemp('k8s') / 'kubernetes'
  shutil.copytree(_KUBERNETES, copy)
  assert set(_CHANGED) == set(_PARAMS), 'a params key without a test value'
  (copy / 'params' / 'params.env').write_text(
      ''.join(f'{k}={v}\n' for k, v in _CHANGED.items()))
  return {name: _kustomize(copy / name) for name in _ALL}


def test_no_manifest_keeps_a_value_of_its_own_for_a_param(changed):
  """With every param changed, none of the old values is left in any rendered
  object (comments aside): each place that needs a value takes it from the
  params file."""
  for name, objects in changed.items():
    text = _without_comments(yaml.safe_dump_all(objects))
    for key, value in _PARAMS.items():
      if not value or key in ('TRAINER_GPUS', 'TRAINER_CPU',
                              'GPU_NODE_LABEL_VALUE'):
        continue  # '', '1', '4', 'true': too common to search for
      assert value not in text, f'{name} still has {key}={value}'


def test_model_name_and_serving_path_agree_everywhere(changed):
  """TF Serving's models.config, its readiness probe and the Pusher's base
  path (the retrain CronJob's serving dir and model) name one model at one
  place on one volume."""
  name, mount = _CHANGED['MODEL_NAME'], _CHANGED['SERVING_MOUNT']
  storage_pvc = _one(changed['storage'], 'PersistentVolumeClaim',
                     _CHANGED['SERVING_PVC'])
  _, cron_pod = _cronjob_pod(changed['retrain'])
  args = _retrain_args(_container(cron_pod))
  from imgcls.pipeline import config as pipeline_config
  pusher_base_path = pipeline_config.pipeline_config_from_args(
      args).model_base_path
  assert pusher_base_path == f'{mount}/{name}'
  assert _claims(cron_pod)[args.serving_dir] == (
      storage_pvc['metadata']['name'])
  for serving in _SERVING:
    objects = changed[serving]
    (model,) = _model_server_config(objects).model_config_list.config
    assert model.name == name
    assert model.base_path == pusher_base_path
    pod_spec = _pod_spec(objects)
    # The server's volume is the Pusher's, mounted where the Pusher sees it.
    assert _claims(pod_spec)[mount] == storage_pvc['metadata']['name']
    assert _readiness_passes(_container(pod_spec), _status(name, _AVAILABLE))
  # The pipeline's steps mount the volumes where the CronJob does.
  assert args.data_root == _CHANGED['DATA_MOUNT']
  assert _claims(cron_pod)[args.data_root] == _CHANGED['DATA_PVC']


def test_images_and_gpu_label_come_from_the_params(changed):
  assert _container(_pod_spec(changed['base']))['image'] == (
      _CHANGED['SERVING_IMAGE'])
  gpu_pod = _pod_spec(changed['overlays/gpu'])
  assert _container(gpu_pod)['image'] == _CHANGED['SERVING_GPU_IMAGE']
  (term,) = gpu_pod['affinity']['nodeAffinity'][
      'requiredDuringSchedulingIgnoredDuringExecution']['nodeSelectorTerms']
  assert term['matchExpressions'] == [{
      'key': _CHANGED['GPU_NODE_LABEL'], 'operator': 'In',
      'values': [_CHANGED['GPU_NODE_LABEL_VALUE']]}]
  # The CronJob's own image and its steps' image (--kfp-image): one value,
  # which kustomize's `images:` could not have kept together.
  _, cron_pod = _cronjob_pod(changed['retrain'])
  container = _container(cron_pod)
  args = _retrain_args(container)
  assert container['image'] == args.kfp_image == _CHANGED['IMGCLS_IMAGE']
  assert args.kfp_host == _CHANGED['KFP_HOST']
  for pvc in _all_of(changed['storage'], 'PersistentVolumeClaim'):
    assert pvc['spec']['accessModes'] == [_CHANGED['STORAGE_ACCESS_MODE']]


def test_params_component_leaves_no_object_in_the_cluster():
  """The params ConfigMap is local to the build (local-config): applying
  base, retrain and storage from one namespace never makes them fight over
  one object, and deleting one never breaks the others."""
  for name in _ALL:
    assert not [o for o in _rendered(name)
                if o['metadata']['name'] == 'imgcls-params'], name


# --- The server -------------------------------------------------------------


def _tf_minor(version):
  return '.'.join(version.split('.')[:2])


def test_serving_images_match_the_training_tensorflow_minor():
  """A server older than the TensorFlow that exports may fail to load its
  SavedModels; a fresh pod then exits and crash-loops (server_core.cc)."""
  requirements = (_REPO / 'requirements.txt').read_text()
  (tensorflow,) = re.findall(r'^tensorflow==(\S+)$', requirements, re.M)
  cpu_image, gpu_image = _PARAMS['SERVING_IMAGE'], _PARAMS['SERVING_GPU_IMAGE']
  name, _, tag = cpu_image.rpartition(':')
  assert name == 'tensorflow/serving'
  assert re.fullmatch(r'\d+\.\d+\.\d+', tag), tag
  assert _tf_minor(tag) == _tf_minor(tensorflow)
  assert gpu_image == f'{cpu_image}-gpu'
  assert _container(_pod_spec('base'))['image'] == cpu_image
  assert _container(_pod_spec('overlays/gpu'))['image'] == gpu_image
  for name in ('overlays/hpa', 'overlays/local'):
    assert _container(_pod_spec(name))['image'] == cpu_image


@pytest.mark.parametrize('name', _SERVING)
def test_server_runs_tensorflow_serving_with_its_config_files(name):
  container = _container(_pod_spec(name))
  assert container['command'] == ['/usr/bin/tensorflow_model_server']
  flags = _args(container)
  assert flags['port'] == str(_GRPC_PORT)
  assert flags['rest_api_port'] == str(_HTTP_PORT)
  assert int(flags['model_config_file_poll_wait_seconds']) > 0
  assert int(flags['file_system_poll_wait_seconds']) > 0
  # Ignored by TF Serving next to --model_config_file: they would only mislead.
  assert not {'model_name', 'model_base_path'} & set(flags)
  pod_spec = _pod_spec(name)
  for flag in ('model_config_file', 'monitoring_config_file',
               'batching_parameters_file'):
    assert _without_comments(_mounted_file(name, pod_spec, flags[flag])).strip()


@pytest.mark.parametrize('name', _SERVING)
def test_model_config_serves_latest_version_from_the_model_volume(name):
  container = _container(_pod_spec(name))
  (model,) = _model_server_config(name).model_config_list.config
  assert model.name == _PARAMS['MODEL_NAME']
  assert model.base_path == (
      f'{_PARAMS["SERVING_MOUNT"]}/{_PARAMS["MODEL_NAME"]}')
  assert model.model_platform == 'tensorflow'
  assert model.model_version_policy.WhichOneof('policy_choice') == 'latest'
  # Labels on versions not yet loaded make TF Serving reject the config.
  if model.version_labels:
    assert 'allow_version_labels_for_unavailable_models' in _args(container)
  assert _env(container)['MODEL_NAME']['value'] == model.name


@pytest.mark.parametrize('name', _SERVING)
def test_thread_pools_follow_the_container_cpu_limit(name):
  """Not the node's cores, which TF Serving would size them by."""
  container = _container(_pod_spec(name))
  cores = math.ceil(_quantity(container['resources']['limits']['cpu']))
  flags = _args(container)
  assert int(flags['tensorflow_intra_op_parallelism']) == cores
  assert int(flags['tensorflow_inter_op_parallelism']) == cores
  # Upstream's 4 request threads per CPU (server.h), per CPU of the limit.
  assert int(flags['rest_api_num_threads']) == 4 * cores
  assert _batching(name)['num_batch_threads'] == cores


@pytest.mark.parametrize('name', _SERVING)
def test_grpc_calls_wait_in_the_batch_queue_rather_than_being_refused(name):
  """gRPC's sync server refuses a call at once when its thread cap is
  reached (thread_manager.cc; server.cc's BuildAndStart sets the cap from
  --grpc_max_threads), and every Predict holds a thread while it waits for
  its batch: the cap must hold
  everything the batch queue holds, one-image calls included, and leave
  threads for status calls beside them."""
  flags = _args(_container(_pod_spec(name)))
  batching = _batching(name)
  queued = ((batching['max_enqueued_batches'] +
             batching['num_batch_threads']) *
            batching['max_execution_batch_size'])
  assert int(flags['grpc_max_threads']) >= queued + 64


@pytest.mark.parametrize('name', _SERVING)
def test_batching_splits_large_requests_and_never_pads(name):
  flags = _args(_container(_pod_spec(name)))
  assert flags['enable_batching'] == 'true'
  batching = _batching(name)
  # A request above the executed batch size is split, not refused; it is
  # refused only above max_batch_size (the queue's input limit), and must fit
  # the queue whole (shared_batch_scheduler.h).
  assert batching['enable_large_batch_splitting'] == 'true'
  assert batching['max_batch_size'] > batching['max_execution_batch_size']
  assert (batching['max_enqueued_batches'] *
          batching['max_execution_batch_size'] >= batching['max_batch_size'])
  # Zero-padding would change the images a model sees (docs/serving.md).
  assert batching.get('pad_variable_length_inputs', 'false') == 'false'
  assert 'allowed_batch_sizes' not in batching
  if name == 'overlays/gpu':
    base = _batching('base')
    assert batching['batch_timeout_micros'] > 0
    assert (batching['max_execution_batch_size'] >
            base['max_execution_batch_size'])


@pytest.mark.parametrize('name', _SERVING)
def test_prometheus_metrics_are_enabled_and_annotated(name):
  pod_spec = _pod_spec(name)
  text = _mounted_file(name, pod_spec,
                       _args(_container(pod_spec))['monitoring_config_file'])
  assert re.search(r'prometheus_config\s*{[^}]*enable:\s*true', text)
  (path,) = re.findall(r'path:\s*"([^"]+)"', text)
  assert path == '/monitoring/prometheus/metrics'
  template = _one(name, 'Deployment', 'tfserving')['spec']['template']
  annotations = template['metadata']['annotations']
  assert annotations['prometheus.io/scrape'] == 'true'
  assert annotations['prometheus.io/port'] == str(_HTTP_PORT)
  assert annotations['prometheus.io/path'] == path


def test_monitoring_component_adds_a_pod_monitor_for_the_same_endpoint(
    tmp_path):
  (tmp_path / 'kustomization.yaml').write_text(textwrap.dedent(f"""\
      resources:
      - {os.path.relpath(_KUBERNETES / 'overlays' / 'gpu', tmp_path)}
      components:
      - {os.path.relpath(_KUBERNETES / 'components' / 'monitoring', tmp_path)}
      """))
  objects = _kustomize(tmp_path)
  monitor = _one(objects, 'PodMonitor', 'tfserving')
  assert monitor['apiVersion'] == 'monitoring.coreos.com/v1'
  template = _one(objects, 'Deployment', 'tfserving')['spec']['template']
  assert monitor['spec']['selector']['matchLabels'].items() <= (
      template['metadata']['labels'].items())
  (endpoint,) = monitor['spec']['podMetricsEndpoints']
  ports = {p['name'] for p in _container(template['spec'])['ports']}
  assert endpoint['port'] in ports
  assert endpoint['path'] == template['metadata']['annotations'][
      'prometheus.io/path']
  # Optional: no overlay brings it (it needs the operator's CRDs).
  for name in _ALL:
    assert not _all_of(name, 'PodMonitor')


@pytest.mark.parametrize('name', _SERVING)
def test_ports_are_named_in_container_and_service(name):
  container = _container(_pod_spec(name))
  assert {p['name']: p['containerPort'] for p in container['ports']} == {
      'grpc': _GRPC_PORT, 'http': _HTTP_PORT}
  service = _one(name, 'Service', 'tfserving')
  assert {p['name']: (p['port'], p['targetPort'])
          for p in service['spec']['ports']} == {
              'grpc': (_GRPC_PORT, 'grpc'), 'http': (_HTTP_PORT, 'http')}
  pod_labels = _one(name, 'Deployment',
                    'tfserving')['spec']['template']['metadata']['labels']
  headless = _one(name, 'Service', 'tfserving-headless')
  assert headless['spec']['clusterIP'] == 'None'
  for svc in (service, headless):
    assert svc['spec']['selector'].items() <= pod_labels.items()


@pytest.mark.parametrize('name', _SERVING)
def test_probes_wait_for_the_first_model_and_gate_on_availability(name):
  container = _container(_pod_spec(name))
  startup = container['startupProbe']
  assert startup['grpc']['port'] == _GRPC_PORT
  # Long enough for a first push and a first load, not seconds.
  assert startup['periodSeconds'] * startup['failureThreshold'] >= 600
  assert container['livenessProbe']['grpc']['port'] == _GRPC_PORT
  # gRPC probes need the health service; without it they always fail.
  assert _args(container)['enable_grpc_healthcheck_service'] == 'true'
  readiness = container['readinessProbe']
  assert 'httpGet' not in readiness  # 200 even after failed loads (#1488)
  command = readiness['exec']['command']
  assert command[:2] == ['bash', '-c']
  assert f'/dev/tcp/localhost/{_HTTP_PORT}' in command[2]
  assert '"AVAILABLE"' in command[2]


def _readiness_passes(container, responses) -> bool:
  """Runs a readiness probe's own command against a fake REST port."""
  command = container['readinessProbe']['exec']['command']
  server = _probe_server(responses)
  try:
    script = command[2].replace(f'/localhost/{_HTTP_PORT}',
                                f'/localhost/{server.server_address[1]}')
    env = {'PATH': os.environ['PATH'], **_env_values(container)}
    return subprocess.run([*command[:2], script], env=env, timeout=10,
                          capture_output=True).returncode == 0
  finally:
    server.shutdown()
    server.server_close()


def _status(model_name, *versions):
  """The reply to GET /v1/models/NAME, as TF Serving words it."""
  return {f'/v1/models/{model_name}': (200, {'model_version_status': [
      {'version': str(number), 'state': state,
       'status': {'error_code': code, 'error_message': message}}
      for number, state, code, message in versions]})}


_AVAILABLE = (1, 'AVAILABLE', 'OK', '')
_FAILED = (2, 'END', 'NOT_FOUND', 'Could not find meta graph def')
_NAME = _PARAMS['MODEL_NAME']


@pytest.mark.skipif(shutil.which('bash') is None, reason='no bash to run it')
@pytest.mark.parametrize('responses, ready', [
    pytest.param(_status(_NAME, _AVAILABLE), True, id='available'),
    pytest.param(_status(_NAME, _FAILED, _AVAILABLE), True,
                 id='new-version-failed-old-one-serves'),
    pytest.param(_status(_NAME, _FAILED), False,
                 id='every-load-failed-yet-http-200'),
    pytest.param(_status(_NAME, (1, 'LOADING', 'OK', '')), False,
                 id='loading'),
    pytest.param(_status('OtherModel', _AVAILABLE), False,
                 id='another-model-is-available'),
    pytest.param({}, False, id='unknown-model-404'),
])
def test_readiness_probe_passes_only_while_a_version_is_available(
    responses, ready):
  assert _readiness_passes(_container(_pod_spec('base')), responses) == ready


# --- Volumes ----------------------------------------------------------------


def test_volumes_live_in_their_own_kustomization():
  """`kubectl delete -k` on any server variant or on retrain keeps the
  models and the data; every variant claims the same volumes, so switching
  between them never asks Kubernetes to change a claim."""
  pvcs = {p['metadata']['name']: p
          for p in _all_of('storage', 'PersistentVolumeClaim')}
  assert set(pvcs) == {_PARAMS['DATA_PVC'], _PARAMS['SERVING_PVC']}
  for pvc in pvcs.values():
    assert pvc['spec']['accessModes'] == [_PARAMS['STORAGE_ACCESS_MODE']]
  for name in _SERVING + ('retrain',):
    assert not _all_of(name, 'PersistentVolumeClaim'), name


@pytest.mark.parametrize('name', _SERVING)
def test_model_volume_is_the_serving_pvc_mounted_read_only(name):
  pod_spec = _pod_spec(name)
  (mount,) = [m for m in _container(pod_spec)['volumeMounts']
              if m['name'] == 'models']
  assert mount['readOnly'] is True
  assert mount['mountPath'] == _PARAMS['SERVING_MOUNT']
  (volume,) = [v for v in pod_spec['volumes'] if v['name'] == 'models']
  assert volume['persistentVolumeClaim']['claimName'] == _PARAMS['SERVING_PVC']


def test_volume_setup_job_makes_both_roots_writable_for_any_uid_of_gid_0(
    tmp_path):
  """Root-owned 0755 volume roots, as many provisioners create them, become
  1000:0 0775: the image's uid and any uid of group 0 (OpenShift's) may
  write them (KFP sets no fsGroup), and a second run changes nothing. The
  Job's own script, run here on two directories."""
  job = _one('storage', 'Job', 'imgcls-volume-setup')
  pod_spec = job['spec']['template']['spec']
  container = _container(pod_spec)
  assert sorted(_claims(pod_spec).items()) == sorted([
      (_PARAMS['DATA_MOUNT'], _PARAMS['DATA_PVC']),
      (_PARAMS['SERVING_MOUNT'], _PARAMS['SERVING_PVC'])])
  security = container['securityContext']
  assert security['runAsUser'] == 0
  assert security['capabilities'] == {'drop': ['ALL'],
                                      'add': ['CHOWN', 'FOWNER']}
  assert security['allowPrivilegeEscalation'] is False
  assert job['spec']['template']['metadata']['annotations'][
      'sidecar.istio.io/inject'] == 'false'
  if os.geteuid() != 0:
    pytest.skip('chown to uid 1000 needs root')
  env = _env_values(container)
  dirs = {key: tmp_path / key.lower() for key in ('DATA_MOUNT',
                                                  'SERVING_MOUNT')}
  for path in dirs.values():
    path.mkdir(mode=0o755)
    os.chown(path, 0, 0)
  assert set(dirs) <= set(env)
  for _ in range(2):
    result = subprocess.run(
        container['command'],
        env={'PATH': os.environ['PATH'],
             **{k: str(v) for k, v in dirs.items()}},
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    for path in dirs.values():
      info = path.stat()
      assert (info.st_uid, info.st_gid) == (1000, 0)
      assert stat.S_IMODE(info.st_mode) == 0o775
  assert result.stdout.split() == [
      str(dirs['DATA_MOUNT']), '1000:0', '775',
      str(dirs['SERVING_MOUNT']), '1000:0', '775']
  for parent in (tmp_path, *tmp_path.parents):
    parent.chmod(parent.stat().st_mode | 0o055)
  for user, group in ((1000, 1000), (12345, 0)):
    for path in dirs.values():
      subprocess.run(['touch', str(path / f'by-{user}')], user=user,
                     group=group, check=True, timeout=30)


# --- Availability and security ---------------------------------------------


@pytest.mark.parametrize('name', _SERVING)
def test_one_drain_or_node_loss_never_takes_every_replica(name):
  template = _one(name, 'Deployment', 'tfserving')['spec']['template']
  labels = template['metadata']['labels']
  pdb = _one(name, 'PodDisruptionBudget', 'tfserving')
  assert pdb['spec']['maxUnavailable'] == 1
  assert pdb['spec']['selector']['matchLabels'].items() <= labels.items()
  (by_node,) = [c for c in template['spec']['topologySpreadConstraints']
                if c['topologyKey'] == 'kubernetes.io/hostname']
  assert by_node['maxSkew'] == 1
  assert by_node['whenUnsatisfiable'] == 'DoNotSchedule'
  assert by_node['labelSelector']['matchLabels'].items() <= labels.items()


@pytest.mark.parametrize('name', _SERVING)
def test_server_is_restricted_with_resources_and_safe_rollouts(name):
  deployment_ = _one(name, 'Deployment', 'tfserving')
  pod_spec = _pod_spec(name)
  container = _container(pod_spec)
  assert _effective_security(pod_spec, container).items() >= (
      _RESTRICTED.items())
  # Writable scratch space despite the read-only root filesystem.
  (tmp,) = [m for m in container['volumeMounts'] if m['mountPath'] == '/tmp']
  volumes = {v['name']: v for v in pod_spec['volumes']}
  assert 'emptyDir' in volumes[tmp['name']]
  for kind in ('requests', 'limits'):
    assert {'cpu', 'memory'} <= set(container['resources'][kind])
  strategy = deployment_['spec']['strategy']
  assert strategy['type'] == 'RollingUpdate'
  if name == 'overlays/gpu':
    # One GPU per pod and no spare one: a surge pod could never be placed.
    # The old pod leaves first and hands its GPU on.
    assert strategy['rollingUpdate'] == {'maxSurge': 0, 'maxUnavailable': 1}
  else:
    # Every old pod serves until its successor is ready.
    assert strategy['rollingUpdate'] == {'maxSurge': 1, 'maxUnavailable': 0}


@pytest.mark.parametrize('name', _SERVING)
def test_gpu_settings_only_in_the_gpu_overlay(name):
  pod_spec = _pod_spec(name)
  container = _container(pod_spec)
  resources = container['resources']
  if name == 'overlays/gpu':
    assert resources['limits']['nvidia.com/gpu'] == 1
    assert any(t['key'] == 'nvidia.com/gpu' and t['effect'] == 'NoSchedule'
               for t in pod_spec['tolerations'])
    assert pod_spec['affinity']['nodeAffinity'][
        'requiredDuringSchedulingIgnoredDuringExecution']
    # Host memory for the -gpu build's CUDA runtime and context besides the
    # base's 2Gi (figure and source: overlays/gpu/gpu.yaml), requested in
    # full.
    assert _quantity(resources['limits']['memory']) >= 8 * 2**30
    assert resources['requests']['memory'] == resources['limits']['memory']
  else:
    assert 'nvidia.com/gpu' not in resources['limits']
    assert not {'tolerations', 'nodeSelector', 'affinity'} & set(pod_spec)


@pytest.mark.parametrize('name', _SERVING)
def test_autoscaler_only_in_the_hpa_overlay(name):
  deployment_ = _one(name, 'Deployment', 'tfserving')
  autoscalers = _all_of(name, 'HorizontalPodAutoscaler')
  if name != 'overlays/hpa':
    assert not autoscalers
    assert deployment_['spec']['replicas'] == (
        1 if name == 'overlays/local' else 2)
    return
  (hpa,) = autoscalers
  assert hpa['apiVersion'] == 'autoscaling/v2'
  assert hpa['spec']['scaleTargetRef'] == {
      'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'tfserving'}
  assert hpa['spec']['minReplicas'] <= hpa['spec']['maxReplicas']
  (metric,) = hpa['spec']['metrics']
  assert metric['type'] == 'Resource'
  assert metric['resource']['name'] == 'cpu'
  assert metric['resource']['target'] == {
      'type': 'Utilization', 'averageUtilization': 80}
  # A fixed count would fight the autoscaler on every apply.
  assert 'replicas' not in deployment_['spec']
  # It does nothing without the resource metrics API: say so where it is.
  for text in ((_KUBERNETES / 'overlays' / 'hpa' / 'kustomization.yaml'),
               (_KUBERNETES / 'README.md')):
    assert 'metrics-server' in text.read_text()


def test_local_overlay_fits_a_laptop():
  local = _container(_pod_spec('overlays/local'))['resources']
  base = _container(_pod_spec('base'))['resources']
  for kind in ('requests', 'limits'):
    for resource in ('cpu', 'memory'):
      assert (_quantity(local[kind][resource]) <
              _quantity(base[kind][resource])), (kind, resource)
  volumes = _pod_spec('overlays/local')['volumes']
  assert not any('hostPath' in v for v in volumes)


# --- The retrain CronJob ----------------------------------------------------


def test_retrain_cronjob_runs_one_round_against_kfp():
  cronjob, pod_spec = _cronjob_pod()
  assert cronjob['spec']['concurrencyPolicy'] == 'Forbid'
  assert pod_spec['restartPolicy'] in ('Never', 'OnFailure')
  container = _container(pod_spec)
  assert container['command'] == ['imgcls']
  args = _retrain_args(container)
  assert args.once
  assert container['image'] == args.kfp_image == _PARAMS['IMGCLS_IMAGE']
  assert args.kfp_host == _PARAMS['KFP_HOST']
  assert args.model_type == _PARAMS['MODEL_NAME']
  assert (args.data_root, args.serving_dir) == (_PARAMS['DATA_MOUNT'],
                                                _PARAMS['SERVING_MOUNT'])
  # The state and lock, hidden on the data volume.
  assert args.pipeline_root == f'{_PARAMS["DATA_MOUNT"]}/.imgcls-retrain'
  assert _effective_security(pod_spec, container).items() >= (
      _RESTRICTED.items())


def test_retrain_cronjob_passes_the_trainer_resources_of_a_local_run():
  """GPUs (0 on a CPU cluster), CPU and memory, with `imgcls compile`'s own
  flag names."""
  _, pod_spec = _cronjob_pod()
  args = _retrain_args(_container(pod_spec))
  assert args.gpus == int(_PARAMS['TRAINER_GPUS'])
  assert args.trainer_cpu == _PARAMS['TRAINER_CPU']
  assert args.trainer_memory == _PARAMS['TRAINER_MEMORY']


def _pod_specs(objects) -> list:
  """(kind, pod spec) of every object that makes pods."""
  found = []
  for obj in objects:
    spec = obj.get('spec', {})
    if obj['kind'] == 'CronJob':
      spec = spec['jobTemplate']['spec']
    if 'template' in spec:
      found.append((obj['kind'], spec['template']['spec']))
  return found


_PINS = ('runAsUser', 'runAsGroup', 'fsGroup')


@pytest.mark.parametrize('name', _OWNERS)
def test_no_uid_is_pinned_where_the_platform_assigns_one(name):
  """Two forms, rendered. Plain: TF Serving's image would run as root, so
  its pods pin uid 1000; the CronJob runs as its image's user; the volume
  setup Job as root. With components/arbitrary-uid (OpenShift's restricted
  SCC assigns a uid with gid 0 and refuses a pod that pins another): no pod
  pins a uid, a gid or an fsGroup, and the root Job is gone."""
  plain = _pod_specs(_rendered(name))
  assert plain
  for kind, pod_spec in plain:
    pinned = {c.get('securityContext', {}).get('runAsUser')
              for c in pod_spec['containers']}
    pinned.add(pod_spec.get('securityContext', {}).get('runAsUser'))
    assert pinned - {None} == {
        'Deployment': {1000}, 'CronJob': set(), 'Job': {0}}[kind], kind
  arbitrary = _with_component_of(name, 'arbitrary-uid')
  for obj in arbitrary:
    _validate(obj)
  for kind, pod_spec in _pod_specs(arbitrary):
    assert kind != 'Job'
    for context in [pod_spec.get('securityContext', {})] + [
        c.get('securityContext', {}) for c in pod_spec['containers']]:
      assert not set(_PINS) & set(context), (kind, context)
    assert pod_spec['securityContext']['runAsNonRoot'] is True
  assert len(_pod_specs(arbitrary)) == len(
      [k for k, _ in plain if k != 'Job'])


@pytest.mark.parametrize('name', _OWNERS)
def test_every_pod_pulls_with_the_params_pull_secret(name, changed):
  """The image pull secret of params.env on every pod the manifests make,
  and on the steps of the runs the CronJob submits; by default none (an
  empty name, which the kubelet skips)."""
  for objects, secret in ((_rendered(name), ''),
                          (changed[name], _CHANGED['IMAGE_PULL_SECRET'])):
    for kind, pod_spec in _pod_specs(objects):
      assert pod_spec['imagePullSecrets'] == [{'name': secret}], kind
      if kind == 'CronJob':
        args = _retrain_args(_container(pod_spec))
        assert args.kfp_image_pull_secret == secret


def test_retrain_pods_opt_out_of_istio_sidecars():
  """A sidecar never exits, so in a Kubeflow profile namespace the Job would
  never complete."""
  cronjob, _ = _cronjob_pod()
  metadata = cronjob['spec']['jobTemplate']['spec']['template']['metadata']
  assert metadata['labels']['sidecar.istio.io/inject'] == 'false'
  assert metadata['annotations']['sidecar.istio.io/inject'] == 'false'


def test_retrain_cronjob_mounts_data_and_serving_volumes():
  _, pod_spec = _cronjob_pod()
  mounts = {m['mountPath']: m for m in _container(pod_spec)['volumeMounts']}
  assert _claims(pod_spec) == {_PARAMS['DATA_MOUNT']: _PARAMS['DATA_PVC'],
                               _PARAMS['SERVING_MOUNT']: _PARAMS['SERVING_PVC']}
  # Only the Pusher writes models.
  assert mounts[_PARAMS['SERVING_MOUNT']]['readOnly'] is True


# --- The retrain CronJob on multi-user Kubeflow -----------------------------

# KFP's convention for the token file (sdk/python/kfp/client/__init__.py).
_TOKEN_ENV = 'KF_PIPELINES_SA_TOKEN_PATH'
_TOKEN_PATH = '/var/run/secrets/kubeflow/pipelines/token'


def test_retrain_runs_as_its_own_account_bound_to_edit_pipelines():
  """Not `default`: KFP's API server reviews the account by name, with no
  groups (resource_manager.go, IsAuthorized), against
  kubeflow-pipelines-edit."""
  _, pod_spec = _cronjob_pod()
  account = pod_spec['serviceAccountName']
  assert account not in ('', 'default')
  assert _one('retrain', 'ServiceAccount', account)
  (binding,) = _all_of('retrain', 'RoleBinding')
  assert binding['roleRef'] == {'apiGroup': 'rbac.authorization.k8s.io',
                                'kind': 'ClusterRole',
                                'name': 'kubeflow-pipelines-edit'}
  # No namespace: the binding's own, wherever `kubectl apply -n NS` puts it.
  assert binding['subjects'] == [{'kind': 'ServiceAccount', 'name': account}]
  # The pod holds no Kubernetes API token.
  assert pod_spec['automountServiceAccountToken'] is False


def test_retrain_mounts_a_renewed_token_for_kfp_and_passes_its_namespace():
  _, pod_spec = _cronjob_pod()
  container = _container(pod_spec)
  (volume,) = [v for v in pod_spec['volumes'] if 'projected' in v]
  (source,) = volume['projected']['sources']
  token = source['serviceAccountToken']
  # The audience KFP's API server reviews tokens for (common/const.go,
  # DefaultTokenReviewAudience).
  assert token['audience'] == 'pipelines.kubeflow.org'
  assert 600 <= token['expirationSeconds'] <= 24 * 3600
  (mount,) = [m for m in container['volumeMounts']
              if m['name'] == volume['name']]
  assert mount['readOnly'] is True
  env = _env_values(container)
  assert env[_TOKEN_ENV] == os.path.join(mount['mountPath'], token['path'])
  assert env[_TOKEN_ENV] == _TOKEN_PATH
  args = _retrain_args(container)
  assert args.kfp_namespace == 'team-a'  # the pod's own namespace
  assert args.kfp_token is None and args.kfp_token_file is None


def _cronjob_command(tmp_path, kfp_host, token_file):
  """The CronJob's command line and env, as the kubelet would run them, with
  the volumes, the token and KFP's address moved to where the test has
  them."""
  _, pod_spec = _cronjob_pod()
  container = _container(pod_spec)
  env = _env_values(container)
  env.update(DATA_MOUNT=str(tmp_path / 'data'),
             SERVING_MOUNT=str(tmp_path / 'serving'),
             KFP_HOST=kfp_host, HOME=str(tmp_path / 'home'))
  env[_TOKEN_ENV] = str(token_file)
  argv = container['command'] + [_expand(a, env) for a in container['args']]
  # The pipeline's steps find the mounts where params.env says.
  params = tmp_path / 'params.env'
  params.write_text(
      (_KUBERNETES / 'params' / 'params.env').read_text() +
      f'\nDATA_MOUNT={env["DATA_MOUNT"]}\n'
      f'SERVING_MOUNT={env["SERVING_MOUNT"]}\n')
  return argv, {**os.environ, **env, deployment.PARAMS_FILE_ENV: str(params)}


# Runs a command, then prints its peak RSS in KiB (getrusage's ru_maxrss on
# Linux) on its last line of stderr.
_PEAK_RSS = ('import resource, subprocess, sys\n'
             'code = subprocess.call(sys.argv[1:])\n'
             'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,'
             ' file=sys.stderr)\n'
             'sys.exit(code)\n')


def _run_tick(argv, env):
  result = subprocess.run([sys.executable, '-c', _PEAK_RSS, *argv], env=env,
                          capture_output=True, text=True, timeout=600)
  *_, peak_kib = result.stderr.split()
  return result, int(peak_kib) * 1024


@pytest.mark.slow
def test_the_cronjobs_own_command_renews_its_token_and_fits_its_memory(
    tmp_path):
  """Two ticks of the CronJob's own command against the KFP API stand-in:
  every request carries the token file's content of the moment, and the
  kubelet's renewal between the ticks is what the second tick sends."""
  from tests import (
    images,
    kfp_fake_server,
    served_models,
  )
  images.write_class_folders(str(tmp_path / 'data' / 'train'),
                             {'a': 3, 'b': 3})
  # A served model, which a tick loads to compare its classes with the data's.
  served_models.push_version(
      served_models.save_model(str(tmp_path / 'model'), ['a', 'b']),
      str(tmp_path / 'serving' / _PARAMS['MODEL_NAME']), 1)
  token_file = tmp_path / 'token'
  token_file.write_text('first-token\n')
  server = kfp_fake_server.FakeKfp(token='first-token',
                                   namespace_required=True)
  try:
    argv, env = _cronjob_command(tmp_path, server.host, token_file)
    first, first_peak = _run_tick(argv, env)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = server.runs
    assert run['namespace'] == 'team-a'
    assert set(server.authorizations) == {'Bearer first-token'}
    # The kubelet renews the token; the old one is no longer accepted.
    token_file.write_text('second-token\n')
    server.token = 'second-token'
    server.set_state(run['run_id'], 'RUNNING')
    seen = len(server.authorizations)
    second, second_peak = _run_tick(argv, env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert set(server.authorizations[seen:]) == {'Bearer second-token'}
    assert len(server.runs) == 1
  finally:
    server.stop()
  _, pod_spec = _cronjob_pod()
  limit = _quantity(_container(pod_spec)['resources']['limits']['memory'])
  print(f'peak RSS: submitting tick {first_peak / 2**20:.0f} MiB, '
        f'following tick {second_peak / 2**20:.0f} MiB')
  # The request and limit are set from this measurement (cronjob.yaml).
  peak = max(first_peak, second_peak)
  assert peak <= _quantity(
      _container(pod_spec)['resources']['requests']['memory'])
  assert peak * 1.5 <= limit


# --- A Kubeflow profile namespace: who applies what ------------------------

_ROLES = _REPO / 'tests' / 'schemas' / 'kubeflow-roles.yaml'
# The API group and resource of each kind the kustomizations hold.
_RESOURCES = {
    'ConfigMap': ('', 'configmaps'),
    'CronJob': ('batch', 'cronjobs'),
    'Deployment': ('apps', 'deployments'),
    'HorizontalPodAutoscaler': ('autoscaling', 'horizontalpodautoscalers'),
    'Job': ('batch', 'jobs'),
    'LimitRange': ('', 'limitranges'),
    'NetworkPolicy': ('networking.k8s.io', 'networkpolicies'),
    'PersistentVolumeClaim': ('', 'persistentvolumeclaims'),
    'PodDisruptionBudget': ('policy', 'poddisruptionbudgets'),
    'RoleBinding': ('rbac.authorization.k8s.io', 'rolebindings'),
    'Service': ('', 'services'),
    'ServiceAccount': ('', 'serviceaccounts'),
    'AuthorizationPolicy': ('security.istio.io', 'authorizationpolicies'),
}


def _rules_of(role_name: str) -> list:
  """A ClusterRole's rules with those its aggregationRule selects, as the
  API server's aggregation controller fills them in."""
  roles = {r['metadata']['name']: r
           for r in yaml.safe_load_all(_ROLES.read_text()) if r}
  role = roles[role_name]
  rules = list(role.get('rules') or [])
  for selector in (role.get('aggregationRule') or {}).get(
      'clusterRoleSelectors', []):
    for name, other in roles.items():
      labels = other['metadata'].get('labels', {})
      if selector['matchLabels'].items() <= labels.items():
        rules += _rules_of(name)
  return rules


def _may_create(rules: list, obj) -> bool:
  group, resource = _RESOURCES[obj['kind']]
  return any(group in rule.get('apiGroups', []) and
             {resource, '*'} & set(rule.get('resources', [])) and
             'create' in rule.get('verbs', [])
             for rule in rules)


def test_the_owner_may_apply_everything_but_the_admins_part():
  """A profile's owner holds kubeflow-admin in the namespace: it creates
  every object of the owner's kustomizations (the network-policy component
  too), and none of kubernetes/admin's, which a cluster admin applies.
  Binding kubeflow-pipelines-edit also needs the owner to hold its rights,
  which kubeflow-edit gives (rbac.yaml)."""
  owner = _rules_of('kubeflow-admin')
  assert owner, 'no rules aggregated'
  for name in _OWNERS:
    for obj in _rendered(name):
      assert _may_create(owner, obj), (name, obj['kind'])
  for obj in _all_of(_with_component_of('overlays/gpu', 'network-policy'),
                     'NetworkPolicy'):
    assert _may_create(owner, obj)
  admin = _rendered('admin')
  assert {o['kind'] for o in admin} == {'LimitRange', 'AuthorizationPolicy'}
  for obj in admin:
    assert not _may_create(owner, obj), obj['kind']


@functools.lru_cache(maxsize=None)
def _with_component_of(base, component) -> tuple:
  """`base` rendered with a component added, as `kustomize edit add
  component` does."""
  import tempfile
  with tempfile.TemporaryDirectory() as tmp:
    return tuple(_with_component(pathlib.Path(tmp), base, component))


def _with_component(tmp_path, base, component) -> list:
  (tmp_path / 'kustomization.yaml').write_text(textwrap.dedent(f"""\
      resources:
      - {os.path.relpath(_KUBERNETES / base, tmp_path)}
      components:
      - {os.path.relpath(_KUBERNETES / 'components' / component, tmp_path)}
      """))
  return _kustomize(tmp_path)


# --- TF Serving's ports in a shared cluster ---------------------------------


def _path_matches(pattern: str, path: str) -> bool:
  """Istio's string match for paths: exact, `prefix*`, `*suffix` or `*`
  (Istio's AuthorizationPolicy reference, Operation)."""
  if pattern == '*':
    return bool(path)
  if pattern.endswith('*'):
    return path.startswith(pattern[:-1])
  if pattern.startswith('*'):
    return path.endswith(pattern[1:])
  return path == pattern


def _allowed(policy, port: int, path: str, method: str) -> bool:
  """Whether an ALLOW policy admits a request: some rule whose `to` has an
  operation every field of which matches (fields AND, list items OR); a
  sidecar-less client matches no `from` and no `when`."""
  assert policy['spec']['action'] == 'ALLOW'
  for rule in policy['spec']['rules']:
    if 'from' in rule or 'when' in rule:
      continue
    for to in rule['to']:
      operation = to['operation']
      if (str(port) in operation.get('ports', [str(port)]) and
          method in operation.get('methods', [method]) and
          any(_path_matches(p, path)
              for p in operation.get('paths', ['*']))):
        return True
  return False


def _rpc(stub_class, method: str) -> str:
  """A gRPC call's HTTP/2 path, as tensorflow-serving-api's own stub
  sends it."""

  class Channel:

    def unary_unary(self, path, *args, **kwargs):
      del args, kwargs
      return path
  return getattr(stub_class(Channel()), method)


def test_only_predictions_and_model_status_reach_tf_serving():
  """From pods without a sidecar, as the pipeline's: Predict and the
  status calls that clients and VerifyServing make pass on 8500 and 8501;
  ModelService's reload, which unloads the models a new config leaves out,
  and anything else are refused."""
  from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
  )
  models = model_service_pb2_grpc.ModelServiceStub
  predictions = prediction_service_pb2_grpc.PredictionServiceStub
  policy = _one('admin', 'AuthorizationPolicy')
  template = _one('base', 'Deployment', 'tfserving')['spec']['template']
  assert policy['spec']['selector']['matchLabels'].items() <= (
      template['metadata']['labels'].items())
  model = _PARAMS['MODEL_NAME']
  admitted = [
      (_GRPC_PORT, _rpc(predictions, 'Predict'), 'POST'),
      (_GRPC_PORT, _rpc(predictions, 'GetModelMetadata'), 'POST'),
      (_GRPC_PORT, _rpc(models, 'GetModelStatus'), 'POST'),
      (_HTTP_PORT, f'/v1/models/{model}', 'GET'),
      (_HTTP_PORT, f'/v1/models/{model}/versions/3:predict', 'POST'),
  ]
  refused = [
      (_GRPC_PORT, _rpc(models, 'HandleReloadConfigRequest'), 'POST'),
      (_HTTP_PORT, '/monitoring/prometheus/metrics', 'GET'),
      (_HTTP_PORT, f'/v1/models/{model}', 'DELETE'),
      (9000, '/', 'GET'),
  ]
  for call in admitted:
    assert _allowed(policy, *call), call
  for call in refused:
    assert not _allowed(policy, *call), call
  # Every rule names its port: no call of another port rides on a path.
  for rule in policy['spec']['rules']:
    for to in rule['to']:
      assert to['operation']['ports']


@pytest.mark.parametrize('name', _SERVING)
def test_only_the_namespaces_own_pods_may_connect_to_tf_serving(name):
  objects = _with_component_of(name, 'network-policy')
  (policy,) = _all_of(objects, 'NetworkPolicy')
  _validate(policy)
  template = _one(objects, 'Deployment', 'tfserving')['spec']['template']
  spec = policy['spec']
  assert spec['podSelector']['matchLabels'].items() <= (
      template['metadata']['labels'].items())
  assert spec['policyTypes'] == ['Ingress']
  (rule,) = spec['ingress']
  # A podSelector without a namespaceSelector: this namespace's pods only.
  assert rule['from'] == [{'podSelector': {}}]
  ports = {p['containerPort'] for p in _container(template['spec'])['ports']}
  assert {p['port'] for p in rule['ports']} == ports == {_GRPC_PORT,
                                                         _HTTP_PORT}
  # Optional: where other tenants share the cluster.
  assert not _all_of(name, 'NetworkPolicy')


# --- The namespace's quota --------------------------------------------------

# Istio 1.29.1's sidecar, as kubeflow/manifests installs it
# (common/istio/istio-install/base/install.yaml, global.proxy.resources).
_SIDECAR = {'requests': {'cpu': '100m', 'memory': '128Mi'},
            'limits': {'cpu': '2', 'memory': '1Gi'}}
_QUOTA_KEYS = ('requests.cpu', 'requests.memory', 'limits.cpu',
               'limits.memory')


def _pod_totals(*containers) -> dict:
  """{quota key: amount} of a pod's containers."""
  return {f'{kind}.{resource}': sum(
      _quantity(c.get(kind, {}).get(resource, 0)) for c in containers)
          for kind in ('requests', 'limits') for resource in ('cpu', 'memory')}


def _widest(spec) -> int:
  """The most tasks of the compiled pipeline that may run at once: the
  largest set of which none depends on another, directly or not."""
  import itertools
  tasks = spec['root']['dag']['tasks']
  after = {name: set(t.get('dependentTasks', [])) for name, t in tasks.items()}

  def ancestors(name):
    found = set(after[name])
    for parent in after[name]:
      found |= ancestors(parent)
    return found
  before = {name: ancestors(name) for name in tasks}
  for size in range(len(tasks), 0, -1):
    for group in itertools.combinations(tasks, size):
      if not any(a in before[b] for a in group for b in group):
        return size
  return 0


@pytest.mark.slow
def test_the_quota_holds_the_projects_peak(tmp_path):
  """admin/resourcequota.yaml against the peak it states: the serving
  pods of a rollout, the CronJob, and a pipeline run at its widest, the
  Trainer's pod among them, every pod with its sidecar or Argo's `wait`."""
  (quota,) = list(yaml.safe_load_all(
      (_KUBERNETES / 'admin' / 'resourcequota.yaml').read_text()))
  _validate(quota)
  hard = {k: _quantity(v) for k, v in quota['spec']['hard'].items()}
  from imgcls import cli
  package = tmp_path / 'p.yaml'
  assert cli.main(['compile', '--output', str(package)]) == 0
  spec = next(yaml.safe_load_all(package.read_text()))
  resources = {label: e['container']['resources']
               for label, e in spec['deploymentSpec']['executors'].items()}

  def as_container(r):
    return {'requests': {'cpu': r['resourceCpuRequest'],
                         'memory': r['resourceMemoryRequest']},
            'limits': {'cpu': r['resourceCpuLimit'],
                       'memory': r['resourceMemoryLimit']}}
  wait = _admitted({}, _one('admin', 'LimitRange'))
  trainer = resources.pop('Trainer_executor')
  step = max((as_container(r) for r in resources.values()),
             key=lambda c: _quantity(c['limits']['memory']))
  deployment_ = _one('base', 'Deployment', 'tfserving')
  serving_pods = (deployment_['spec']['replicas'] +
                  deployment_['spec']['strategy']['rollingUpdate']['maxSurge'])
  _, cron_pod = _cronjob_pod()
  pods = ([_pod_totals(_container(_pod_spec('base')), _SIDECAR)] *
          serving_pods + [_pod_totals(_container(cron_pod))] +
          [_pod_totals(as_container(trainer), wait)] +
          [_pod_totals(step, wait)] * (_widest(spec) - 1))
  for key in _QUOTA_KEYS:
    needed = sum(p[key] for p in pods)
    assert hard[key] >= needed, (key, needed)
  assert hard['requests.nvidia.com/gpu'] >= int(
      trainer['accelerator']['resourceCount'])
  claims = _all_of('storage', 'PersistentVolumeClaim')
  assert hard['persistentvolumeclaims'] >= len(claims)
  assert hard['requests.storage'] >= sum(
      _quantity(c['spec']['resources']['requests']['storage'])
      for c in claims)
  assert _widest(spec) == 3  # what resourcequota.yaml's comment says


# KFP 2.16.1's own containers of a step's pod and of a driver's pod, with
# the resources its compiler gives them (backend/src/v2/compiler/
# argocompiler/argo.go, driverResources and launcherResources), after the API
# server's defaulting (a missing request takes the limit). Argo's `wait` has
# none
# (workflow-controller-configmap-patch.yaml, since kubeflow/pipelines#9089).
_DRIVER = {'requests': {'cpu': '100m', 'memory': '64Mi'},
           'limits': {'cpu': '500m', 'memory': '512Mi'}}
_LAUNCHER = {'requests': {'cpu': '100m', 'memory': '256Mi'},
             'limits': {'cpu': '500m', 'memory': '256Mi'}}


def _admitted(container: dict, limit_range: dict) -> dict:
  """A container's resources after the LimitRanger admission plugin: a
  resource missing from limits takes `default`, from requests
  `defaultRequest` (kubernetes plugin/pkg/admission/limitranger,
  defaultContainerResourceRequirements and mergeContainerResources)."""
  (item,) = limit_range['spec']['limits']
  assert item['type'] == 'Container'
  resources = {kind: dict(container.get(kind, {}))
               for kind in ('requests', 'limits')}
  for resource, value in item.get('default', {}).items():
    resources['limits'].setdefault(resource, value)
  for resource, value in item.get('defaultRequest', {}).items():
    resources['requests'].setdefault(resource, value)
  return resources


def _step_pod(limit_range) -> dict:
  """{container: resources} of a step's pod: its own container with the
  compiled step's cpu and memory, KFP's launcher, Argo's wait."""
  from imgcls.pipeline import kubeflow_config
  options = kubeflow_config.KubeflowOptions()
  step = {'requests': {'cpu': options.step_cpu, 'memory': options.step_memory},
          'limits': {'cpu': options.step_cpu, 'memory': options.step_memory}}
  return {name: _admitted(resources, limit_range) for name, resources in
          (('main', step), ('kfp-launcher', _LAUNCHER), ('wait', {}))}


def test_limit_range_lets_a_quota_admit_every_kfp_container():
  limit_range = _one('admin', 'LimitRange')
  driver_pod = {name: _admitted(resources, limit_range)
                for name, resources in (('main', _DRIVER), ('wait', {}))}
  # A ResourceQuota on any of these rejects a pod with a container that
  # names no request or limit for it.
  for pod in (_step_pod(limit_range), driver_pod):
    for name, resources in pod.items():
      for kind in ('requests', 'limits'):
        assert set(resources[kind]) >= {'cpu', 'memory',
                                        'ephemeral-storage'}, (name, kind)
  # Argo's wait gets what KFP itself gave it before #9089, and its driver.
  wait = _step_pod(limit_range)['wait']
  assert _quantity(wait['limits']['cpu']) >= 0.5
  assert _quantity(wait['limits']['memory']) >= 512 * 2**20
  # It reaches every container of the namespace: only the admin's part,
  # applied knowingly, brings it.
  for name in _OWNERS:
    assert not _all_of(name, 'LimitRange')


def test_limit_range_asks_for_little_disk_and_lets_a_step_stage_its_data():
  """The kubelet compares a pod's emptyDirs (the launcher's /minio, /s3,
  /gcs staging) with the sum of its containers' limits: the step may stage
  up to main's + wait's, while the scheduler is asked for little."""
  limit_range = _one('admin', 'LimitRange')
  pod = _step_pod(limit_range)
  requested = sum(_quantity(r['requests']['ephemeral-storage'])
                  for r in pod.values())
  staging = sum(_quantity(pod[name]['limits']['ephemeral-storage'])
                for name in ('main', 'wait'))
  assert requested < 2**30
  assert staging >= 16 * 2**30


def test_bucket_overlay_serves_the_config_the_pusher_writes_in_the_bucket():
  """overlays/bucket: no model volume; TF Serving re-reads the models.config
  that a push to a gs:// serving directory rewrites (serving_dir/bucket.py),
  as a ServiceAccount that Workload Identity maps to a Google one."""
  objects = _rendered('overlays/bucket')
  pod_spec = _pod_spec(objects)
  container = _container(pod_spec)
  flags = _args(container)
  assert re.fullmatch(r'gs://[^/]+/.+/' + re.escape(
      names.MODEL_CONFIG_FILE), flags['model_config_file'])
  assert int(flags['model_config_file_poll_wait_seconds']) > 0
  assert not [v for v in pod_spec['volumes'] if 'persistentVolumeClaim' in v]
  assert ({m['name'] for m in container['volumeMounts']} ==
          {v['name'] for v in pod_spec['volumes']})
  assert 'tfserving-models' not in {
      c['metadata']['name'] for c in _all_of(objects, 'ConfigMap')}
  account = _one(objects, 'ServiceAccount', pod_spec['serviceAccountName'])
  assert account['metadata']['annotations']['iam.gke.io/gcp-service-account']
