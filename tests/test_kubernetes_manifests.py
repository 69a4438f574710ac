"""The kustomize trees under kubernetes/, rendered offline by kubectl.

Nothing here reaches a cluster. Every rendered object is validated against the
Kubernetes API schemas that kubernetes-validate ships, and the properties that
serving relies on are asserted on what kubectl would apply, overlays included:
probes that reflect model availability, a shared read-only model volume, the
restricted security context, and GPU or autoscaling only where asked for.
"""
import functools
import http.server
import json
import os
import pathlib
import re
import shutil
import subprocess
import textwrap
import threading

import kubernetes_validate
import pytest
import yaml

_KUBERNETES = pathlib.Path(__file__).resolve().parents[1] / 'kubernetes'
# A version kubernetes-validate ships schemas for, and one with GA gRPC probes
# (1.27) and CronJob time zones (1.27).
_KUBERNETES_VERSION = '1.32'
_SERVING = ('base', 'overlays/gpu', 'overlays/hpa', 'overlays/local')
_ALL = _SERVING + ('retrain',)
_MODEL_NAME = 'LenetModel'
_GRPC_PORT = 8500
_HTTP_PORT = 8501
_RESTRICTED = {
    'runAsNonRoot': True,
    'runAsUser': 1000,
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


def _all_of(name, kind):
  return [o for o in _rendered(name) if o['kind'] == kind]


def _one(name, kind, object_name=None):
  found = [o for o in _all_of(name, kind)
           if object_name in (None, o['metadata']['name'])]
  assert len(found) == 1, f'{name}: {kind} {object_name or ""} x{len(found)}'
  return found[0]


def _pod_spec(name):
  return _one(name, 'Deployment', 'tfserving')['spec']['template']['spec']


def _container(pod_spec):
  (container,) = pod_spec['containers']
  return container


def _args(container) -> dict:
  """`--flag=value` args as {flag: value}; a bare `--flag` is 'true'."""
  flags = {}
  for arg in container['args']:
    assert arg.startswith('--'), arg
    key, _, value = arg[2:].partition('=')
    flags[key] = value or 'true'
  return flags


def _env(container) -> dict:
  return {e['name']: e for e in container.get('env', [])}


def _mounted_file(name, pod_spec, path) -> str:
  """The text that a container path shows, read from the ConfigMap mounted
  over its directory: proves each flag names a file that will exist."""
  directory, filename = os.path.split(path)
  (mount,) = [m for m in _container(pod_spec)['volumeMounts']
              if m['mountPath'] == directory]
  (volume,) = [v for v in pod_spec['volumes'] if v['name'] == mount['name']]
  config_map = _one(name, 'ConfigMap', volume['configMap']['name'])
  assert filename in config_map['data'], (path, sorted(config_map['data']))
  return config_map['data'][filename]


def _effective_security(pod_spec, container) -> dict:
  """Container settings override the pod's, as the kubelet applies them."""
  return {**pod_spec.get('securityContext', {}),
          **container.get('securityContext', {})}


def _without_comments(text):
  return re.sub(r'#.*', '', text)


def _probe_server(responses):
  """A stand-in for TF Serving's REST port: path -> (status, JSON body)."""

  class Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):  # pylint: disable=invalid-name
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


@pytest.mark.parametrize('name', _ALL)
def test_every_object_is_valid_for_kubernetes(name):
  objects = _rendered(name)
  assert objects
  for obj in objects:
    try:
      kubernetes_validate.validate(obj, _KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
      pytest.fail(f'{name}: {obj["kind"]}/{obj["metadata"]["name"]}: {e}')


@pytest.mark.parametrize('name', _SERVING)
def test_server_runs_pinned_tensorflow_serving_with_its_config_files(name):
  container = _container(_pod_spec(name))
  image, _, tag = container['image'].partition(':')
  assert image == 'tensorflow/serving'
  assert re.fullmatch(r'\d+\.\d+\.\d+(-gpu)?', tag), tag
  assert container['command'] == ['/usr/bin/tensorflow_model_server']
  flags = _args(container)
  assert flags['port'] == str(_GRPC_PORT)
  assert flags['rest_api_port'] == str(_HTTP_PORT)
  assert int(flags['model_config_file_poll_wait_seconds']) > 0
  assert int(flags['file_system_poll_wait_seconds']) > 0
  assert flags['enable_batching'] == 'true'
  # Ignored by TF Serving next to --model_config_file: they would only mislead.
  assert not {'model_name', 'model_base_path'} & set(flags)
  pod_spec = _pod_spec(name)
  for flag in ('model_config_file', 'monitoring_config_file',
               'batching_parameters_file'):
    assert _without_comments(_mounted_file(name, pod_spec, flags[flag])).strip()


@pytest.mark.parametrize('name', _SERVING)
def test_model_config_serves_latest_version_from_the_model_volume(name):
  pod_spec = _pod_spec(name)
  container = _container(pod_spec)
  text = _without_comments(_mounted_file(
      name, pod_spec, _args(container)['model_config_file']))
  assert re.findall(r'name:\s*"([^"]+)"', text) == [_MODEL_NAME]
  (base_path,) = re.findall(r'base_path:\s*"([^"]+)"', text)
  (mount,) = [m for m in container['volumeMounts'] if m['name'] == 'models']
  assert base_path == f'{mount["mountPath"]}/{_MODEL_NAME}'
  assert re.search(r'model_version_policy\s*{\s*latest\s*{', text)
  # Labels on versions not yet loaded make TF Serving reject the config.
  if 'version_labels' in text:
    assert 'allow_version_labels_for_unavailable_models' in _args(container)
  assert _env(container)['MODEL_NAME']['value'] == _MODEL_NAME


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


def _readiness_passes(responses) -> bool:
  """Runs the base readiness probe's own command against a fake REST port."""
  container = _container(_pod_spec('base'))
  command = container['readinessProbe']['exec']['command']
  server = _probe_server(responses)
  try:
    script = command[2].replace(f'/localhost/{_HTTP_PORT}',
                                f'/localhost/{server.server_address[1]}')
    env = {'PATH': os.environ['PATH'],
           'MODEL_NAME': _env(container)['MODEL_NAME']['value']}
    return subprocess.run([*command[:2], script], env=env, timeout=10,
                          capture_output=True).returncode == 0
  finally:
    server.shutdown()
    server.server_close()


def _status(*versions):
  """The reply to GET /v1/models/LenetModel, as TF Serving words it."""
  return {f'/v1/models/{_MODEL_NAME}': (200, {'model_version_status': [
      {'version': str(number), 'state': state,
       'status': {'error_code': code, 'error_message': message}}
      for number, state, code, message in versions]})}


_AVAILABLE = (1, 'AVAILABLE', 'OK', '')
_FAILED = (2, 'END', 'NOT_FOUND', 'Could not find meta graph def')


@pytest.mark.skipif(shutil.which('bash') is None, reason='no bash to run it')
@pytest.mark.parametrize('responses, ready', [
    pytest.param(_status(_AVAILABLE), True, id='available'),
    pytest.param(_status(_FAILED, _AVAILABLE), True,
                 id='new-version-failed-old-one-serves'),
    pytest.param(_status(_FAILED), False, id='every-load-failed-yet-http-200'),
    pytest.param(_status((1, 'LOADING', 'OK', '')), False, id='loading'),
    pytest.param({}, False, id='unknown-model-404'),
])
def test_readiness_probe_passes_only_while_a_version_is_available(
    responses, ready):
  assert _readiness_passes(responses) == ready


@pytest.mark.parametrize('name', _SERVING)
def test_model_volume_is_the_shared_pvc_mounted_read_only(name):
  pod_spec = _pod_spec(name)
  (mount,) = [m for m in _container(pod_spec)['volumeMounts']
              if m['name'] == 'models']
  assert mount['readOnly'] is True
  (volume,) = [v for v in pod_spec['volumes'] if v['name'] == 'models']
  claim = volume['persistentVolumeClaim']
  pvc = _one(name, 'PersistentVolumeClaim', 'imgcls-serving')
  assert claim['claimName'] == pvc['metadata']['name']
  expected_mode = 'ReadWriteOnce' if name == 'overlays/local' else (
      'ReadWriteMany')
  assert pvc['spec']['accessModes'] == [expected_mode]


@pytest.mark.parametrize('name', _SERVING)
def test_server_is_restricted_with_resources_and_safe_rollouts(name):
  deployment = _one(name, 'Deployment', 'tfserving')
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
  strategy = deployment['spec']['strategy']
  assert strategy['type'] == 'RollingUpdate'
  assert strategy['rollingUpdate']['maxUnavailable'] == 0


@pytest.mark.parametrize('name', _SERVING)
def test_gpu_settings_only_in_the_gpu_overlay(name):
  pod_spec = _pod_spec(name)
  container = _container(pod_spec)
  limits = container['resources']['limits']
  tag = container['image'].partition(':')[2]
  base_tag = _container(_pod_spec('base'))['image'].partition(':')[2]
  if name == 'overlays/gpu':
    assert limits['nvidia.com/gpu'] == 1
    assert tag == f'{base_tag}-gpu'
    assert any(t['key'] == 'nvidia.com/gpu' and t['effect'] == 'NoSchedule'
               for t in pod_spec['tolerations'])
    assert pod_spec['nodeSelector']
  else:
    assert 'nvidia.com/gpu' not in limits
    assert not tag.endswith('-gpu')
    assert 'tolerations' not in pod_spec and 'nodeSelector' not in pod_spec


@pytest.mark.parametrize('name', _SERVING)
def test_autoscaler_only_in_the_hpa_overlay(name):
  deployment = _one(name, 'Deployment', 'tfserving')
  autoscalers = _all_of(name, 'HorizontalPodAutoscaler')
  if name != 'overlays/hpa':
    assert not autoscalers
    assert deployment['spec']['replicas'] == (
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
  assert 'replicas' not in deployment['spec']


def _quantity(value) -> float:
  """A Kubernetes CPU or memory quantity as a number, for comparing them."""
  number, unit = re.fullmatch(r'([\d.]+)(m|Ki|Mi|Gi)?', str(value)).groups()
  return float(number) * {None: 1, 'm': 1e-3, 'Ki': 2**10, 'Mi': 2**20,
                          'Gi': 2**30}[unit]


def test_local_overlay_fits_a_laptop():
  local = _container(_pod_spec('overlays/local'))['resources']
  base = _container(_pod_spec('base'))['resources']
  for kind in ('requests', 'limits'):
    for resource in ('cpu', 'memory'):
      assert (_quantity(local[kind][resource]) <
              _quantity(base[kind][resource])), (kind, resource)
  volumes = _pod_spec('overlays/local')['volumes']
  assert not any('hostPath' in v for v in volumes)


def _cronjob_pod():
  cronjob = _one('retrain', 'CronJob', 'imgcls-retrain')
  return cronjob, cronjob['spec']['jobTemplate']['spec']['template']['spec']


def test_retrain_cronjob_runs_one_round_against_kfp():
  cronjob, pod_spec = _cronjob_pod()
  assert cronjob['spec']['concurrencyPolicy'] == 'Forbid'
  assert pod_spec['restartPolicy'] in ('Never', 'OnFailure')
  container = _container(pod_spec)
  assert container['image'] == 'imgcls:latest'
  assert container['command'] + container['args'] == [
      'imgcls', 'retrain', '--once', '--data-root', '/data', '--serving-dir',
      '/serving', '--pipeline-root', '/data/.imgcls-retrain', '--kfp-host',
      '$(KFP_HOST)', '--kfp-image', '$(IMGCLS_IMAGE)']
  env = _env(container)
  values = {}
  for name in ('KFP_HOST', 'IMGCLS_IMAGE'):
    ref = env[name]['valueFrom']['configMapKeyRef']
    values[name] = _one('retrain', 'ConfigMap', ref['name'])['data'][ref['key']]
  assert values['KFP_HOST'].startswith('http')
  assert values['IMGCLS_IMAGE'] == container['image']
  # The arguments are ones `imgcls retrain` accepts.
  from imgcls import cli  # pylint: disable=g-import-not-at-top
  args = cli.build_parser().parse_args(container['args'])
  assert args.kfp_image == '$(IMGCLS_IMAGE)' and args.once
  assert _effective_security(pod_spec, container).items() >= (
      _RESTRICTED.items())


def test_retrain_cronjob_mounts_data_and_serving_volumes():
  _, pod_spec = _cronjob_pod()
  mounts = {m['mountPath']: m for m in _container(pod_spec)['volumeMounts']}
  claims = {v['name']: v['persistentVolumeClaim']['claimName']
            for v in pod_spec['volumes'] if 'persistentVolumeClaim' in v}
  data_pvc = _one('retrain', 'PersistentVolumeClaim', 'imgcls-data')
  assert claims[mounts['/data']['name']] == data_pvc['metadata']['name']
  assert data_pvc['spec']['accessModes'] == ['ReadWriteMany']
  # The serving PVC comes from the serving kustomization, same namespace.
  serving_pvc = _one('base', 'PersistentVolumeClaim', 'imgcls-serving')
  assert claims[mounts['/serving']['name']] == serving_pvc['metadata']['name']
  assert mounts['/serving']['readOnly'] is True


def test_retrain_image_is_overridable_with_kustomize_images(tmp_path):
  (tmp_path / 'kustomization.yaml').write_text(textwrap.dedent(f"""\
      resources:
      - {os.path.relpath(_KUBERNETES / 'retrain', tmp_path)}
      images:
      - name: imgcls
        newName: registry.example.com/imgcls
        newTag: 1.2.3
      """))
  (cronjob,) = [o for o in _kustomize(tmp_path) if o['kind'] == 'CronJob']
  pod_spec = cronjob['spec']['jobTemplate']['spec']['template']['spec']
  assert _container(pod_spec)['image'] == 'registry.example.com/imgcls:1.2.3'
