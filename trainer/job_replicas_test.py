"""The Trainer step's launch of its replicas as an Indexed Job, through the
pinned `kubernetes` client, against tests/kubernetes_fake_api.py (it never
met a real API server here); the Job and Service it makes, against the
Kubernetes API's schemas; a replica's own side, for real."""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time

import kubernetes_validate
import pytest
import yaml

from imgcls.trainer import cluster, job_replicas
from imgcls.trainer.local_replicas import ReplicaFailed
from tests.kubernetes_fake_api import FakeKubernetes

NS = 'team-a'
STEP = 'imgcls-x7k2p-system-container-impl-1234567890'
COUNT = 2
# A version kubernetes-validate ships schemas for (as
# tests/test_kubernetes_manifests.py validates the manifests).
KUBERNETES_VERSION = '1.32'


def _step_pod() -> dict:
  """A Trainer step's pod as KFP 2.16.1 makes it: its main container with
  KFP's env and emptyDir mounts, the data PVC as its driver mounts one
  (volume and mount named after the claim, backend/src/v2/driver/k8s.go),
  and the GPU placement `imgcls compile` asks for."""
  return {
      'metadata': {'name': STEP},
      'spec': {
          'serviceAccountName': 'default-editor',
          'nodeSelector': {'nvidia.com/gpu.present': 'true'},
          'tolerations': [{'key': 'nvidia.com/gpu', 'operator': 'Exists',
                           'effect': 'NoSchedule'}],
          'imagePullSecrets': [{'name': 'regcred'}],
          'securityContext': {'runAsNonRoot': True},
          'volumes': [
              {'name': 'kfp-launcher', 'emptyDir': {}},
              {'name': 'imgcls-data',
               'persistentVolumeClaim': {'claimName': 'imgcls-data'}}],
          'containers': [{
              'name': 'main', 'image': 'registry.example/imgcls:1',
              'command': ['/kfp-launcher/launch'],
              'env': [
                  {'name': 'KFP_POD_NAME', 'valueFrom': {'fieldRef': {
                      'fieldPath': 'metadata.name'}}},
                  {'name': 'TF_CPP_MIN_LOG_LEVEL', 'value': '1'}],
              'resources': {
                  'requests': {'cpu': '4', 'memory': '16Gi',
                               'nvidia.com/gpu': '1'},
                  'limits': {'cpu': '4', 'memory': '16Gi',
                             'nvidia.com/gpu': '1'}},
              'volumeMounts': [
                  {'name': 'kfp-launcher', 'mountPath': '/kfp-launcher'},
                  {'name': 'imgcls-data', 'mountPath': '/data'}]}],
      },
      'status': {'phase': 'Running'},
  }


class _Artifact:

  def __init__(self, uri):
    self.uri = uri


@pytest.fixture
def fake():
  server = FakeKubernetes()
  server.add('pods', NS, _step_pod())
  yield server
  server.close()


@pytest.fixture
def launch(fake):
  lines = []
  launched = job_replicas.Launch(fake.api_client(), NS, STEP, lines.append)
  launched.lines = lines
  return launched


def _in_background(target):
  """Runs `target` on a thread; the returned dict gets its error."""
  outcome = {}

  def run():
    try:
      target()
    except Exception as e:  # handed to the test
      outcome['error'] = e
  thread = threading.Thread(target=run, daemon=True)
  thread.start()
  outcome['thread'] = thread
  return outcome


def _wait_for(condition, what):
  for _ in range(200):
    found = condition()
    if found:
      return found
    time.sleep(0.05)
  raise AssertionError(f'never: {what}')


def _running(fake, launch, tmp_path, command=lambda i, o: ['train']):
  """`job_replicas.run` on a thread, from a step with an input and two
  outputs, its staging folder in tmp_path, once its replicas have started.
  Returns (the outcome, the Job's pods, the staging)."""
  examples = tmp_path / 'minio' / 'examples'
  (examples / 'Split-train').mkdir(parents=True)
  (examples / 'Split-train' / 'data.gz').write_bytes(b'records')
  inputs = {'examples': [_Artifact(str(examples))]}
  outputs = {'model': [_Artifact(str(tmp_path / 'minio' / 'model'))],
             'model_run': [_Artifact(str(tmp_path / 'minio' / 'run'))]}
  staging = job_replicas.Staging(str(tmp_path / 'data' / 'staging'),
                                 launch.name)
  outcome = _in_background(lambda: job_replicas.run(
      launch, staging, COUNT, command, inputs, outputs))
  pods = _wait_for(lambda: len(fake.pods_of(NS, launch.name)) == COUNT and
                   fake.pods_of(NS, launch.name), 'the replicas')
  for pod in pods:
    fake.start(NS, pod['metadata']['name'])
  return outcome, pods, staging


def test_the_job_and_service_are_valid_kubernetes_objects():
  name = job_replicas.object_name('0d9e1c3a-uid')
  command = ['python', '-m', 'tfx.scripts.run_executor']
  for obj in (job_replicas.job_manifest(
      {**_step_pod(), 'metadata': {'name': STEP, 'uid': 'u'}}, name, COUNT,
      command), job_replicas.service_manifest(
          {'metadata': {'name': STEP, 'uid': 'u'}}, name)):
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_replicas_get_the_steps_image_resources_placement_and_volumes(
    fake, launch):
  launch.create(COUNT, ['train'])
  job = fake.get('jobs', NS, launch.name)
  step = fake.get('pods', NS, STEP)
  owner = [{'apiVersion': 'v1', 'kind': 'Pod', 'name': STEP,
            'uid': step['metadata']['uid']}]
  assert job['metadata']['ownerReferences'] == owner
  assert fake.get('services', NS, launch.name)['metadata'][
      'ownerReferences'] == owner
  spec = job['spec']
  assert (spec['completionMode'], spec['completions'], spec['parallelism'],
          spec['backoffLimit']) == ('Indexed', COUNT, COUNT, 0)
  main = step['spec']['containers'][0]
  pods = fake.pods_of(NS, launch.name)
  assert len(pods) == COUNT
  for index, pod in enumerate(pods):
    pod_spec = pod['spec']
    (container,) = pod_spec['containers']
    assert container['image'] == main['image']
    assert container['resources'] == main['resources']
    for key in ('nodeSelector', 'tolerations', 'imagePullSecrets',
                'securityContext'):
      assert pod_spec[key] == step['spec'][key], key
    # The data volume, not KFP's own emptyDirs.
    assert pod_spec['volumes'] == [step['spec']['volumes'][1]]
    assert container['volumeMounts'] == [main['volumeMounts'][1]]
    # Its DNS name is one of the addresses every replica is given.
    env = {e['name']: e.get('value') for e in container['env']}
    host = f'{pod_spec["hostname"]}.{pod_spec["subdomain"]}'
    assert env[job_replicas.ADDRESSES_ENV].split(',')[index] == (
        f'{host}:{job_replicas.PORT}')
    assert env['TF_CPP_MIN_LOG_LEVEL'] == '1'
    assert 'KFP_POD_NAME' not in env  # the step's name is not a replica's
  service = fake.get('services', NS, launch.name)
  assert service['spec']['clusterIP'] == 'None'
  assert service['spec']['selector'].items() <= pods[0]['metadata'][
      'labels'].items()


def test_a_completed_job_stages_the_chiefs_outputs_back_and_cleans_up(
    fake, launch, tmp_path):
  commands = []

  def command(staged_inputs, staged_outputs):
    commands.append((staged_inputs, staged_outputs))
    return ['train']
  outcome, pods, staging = _running(fake, launch, tmp_path, command)
  ((staged_inputs, staged_outputs),) = commands
  # The replicas see the inputs on the shared volume, at a path that a
  # retried step's launch stages them at too: the backup's key stays.
  (staged_examples,) = staged_inputs['examples']
  assert open(os.path.join(staged_examples, 'Split-train', 'data.gz'),
              'rb').read() == b'records'
  assert staged_examples == str(tmp_path / 'data' / 'staging' / 'inputs') + (
      str(tmp_path / 'minio' / 'examples'))
  for index, pod in enumerate(pods):
    fake.log(NS, pod['metadata']['name'], f'epoch 1 on replica {index}')
  # The chief exports, as run_fn does, into the staged output.
  model = os.path.join(staged_outputs['model'][0], 'Format-Serving')
  os.makedirs(model)
  open(os.path.join(model, 'saved_model.pb'), 'wb').close()
  for pod in pods:
    fake.finish(NS, pod['metadata']['name'], 0)
  outcome['thread'].join(timeout=60)
  assert 'error' not in outcome, outcome
  assert (tmp_path / 'minio' / 'model' / 'Format-Serving' /
          'saved_model.pb').exists()
  assert '[replica 1] epoch 1 on replica 1' in launch.lines
  assert fake.names('jobs', NS) == fake.names('services', NS) == []
  assert fake.names('pods', NS) == [STEP]  # the Job's pods went with it
  assert os.listdir(staging.base) == []


def test_a_failed_replica_fails_the_step_with_its_lines(fake, launch,
                                                        tmp_path):
  outcome, pods, staging = _running(fake, launch, tmp_path)
  failing = pods[1]['metadata']['name']
  fake.log(NS, failing, 'started epoch 2', 'Killed')
  fake.finish(NS, failing, 137, 'OOMKilled')
  outcome['thread'].join(timeout=60)
  error = outcome.get('error')
  assert isinstance(error, ReplicaFailed), outcome
  assert (f'replica 1 of {COUNT} ({failing}) ended with exit code 137 '
          '(OOMKilled)') in str(error)
  assert 'BackoffLimitExceeded' in str(error)
  assert '  started epoch 2\n  Killed' in str(error)
  assert not (tmp_path / 'minio' / 'model').exists()  # nothing kept
  assert fake.names('jobs', NS) == fake.names('services', NS) == []
  assert fake.names('pods', NS) == [STEP]
  assert os.listdir(staging.base) == []


def test_deleting_the_steps_pod_deletes_the_job_and_service(fake, launch):
  """What deleting a run does: its pods go, and what they own with them."""
  launch.create(COUNT, ['train'])
  fake.delete('pods', NS, STEP)
  assert fake.names('jobs', NS) == fake.names('services', NS) == []
  assert fake.names('pods', NS) == []


def test_a_job_deleted_without_propagation_would_orphan_its_pods(fake,
                                                                 launch):
  """Why delete() names the propagation: batch/v1's default orphans."""
  launch.create(COUNT, ['train'])
  fake.delete('jobs', NS, launch.name, propagation=None)
  assert len(fake.names('pods', NS)) == 1 + COUNT
  launch.delete()  # the Job already gone: not an error
  assert fake.names('services', NS) == []


def test_a_replica_builds_its_tf_config_from_its_index():
  environ = job_replicas.replica_environ({
      job_replicas.ADDRESSES_ENV: 'j-0.j:2222,j-1.j:2222',
      job_replicas.INDEX_ENV: '1'})
  assert cluster.replica(environ) == cluster.Replica(2, 1)


def test_a_replica_whose_step_is_gone_stops(tmp_path):
  heartbeat = tmp_path / 'heartbeat'
  heartbeat.touch()
  os.utime(heartbeat, (time.time() - 60, time.time() - 60))
  env = {**os.environ, job_replicas.ADDRESSES_ENV: 'a:1,b:2',
         job_replicas.INDEX_ENV: '0'}
  done = subprocess.run(
      [sys.executable, '-m', 'imgcls.trainer.job_replicas', '--heartbeat',
       str(heartbeat), '--timeout', '5', '--', sys.executable, '-c',
       'import time; time.sleep(600)'],
      env=env, capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 3
  assert 'the Trainer step that started this replica is gone' in done.stderr


def test_a_replica_runs_its_command_with_its_tf_config(tmp_path):
  heartbeat = tmp_path / 'heartbeat'
  heartbeat.touch()
  env = {**os.environ, job_replicas.ADDRESSES_ENV: 'a:1,b:2',
         job_replicas.INDEX_ENV: '1'}
  done = subprocess.run(
      [sys.executable, '-m', 'imgcls.trainer.job_replicas', '--heartbeat',
       str(heartbeat), '--', sys.executable, '-c',
       'import os, sys; print(os.environ["TF_CONFIG"]); sys.exit(5)'],
      env=env, capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 5
  assert cluster.replica({cluster.TF_CONFIG: done.stdout}) == (
      cluster.Replica(2, 1))


_REPO = pathlib.Path(__file__).resolve().parents[1]
_API_PATH = re.compile(r'^/(?:api/v1|apis/(?P<group>[a-z.]+)/v1)/namespaces/'
                       r'[^/]+/(?P<kind>[a-z]+)(?P<name>/[^/]+)?'
                       r'(?P<sub>/[a-z]+)?$')
_VERBS = {'POST': 'create', 'DELETE': 'delete'}


def _rbac(tmp_path) -> list:
  """kubernetes/components/trainer-replicas as kubectl renders it."""
  (tmp_path / 'kustomization.yaml').write_text(
      'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'
      'components:\n- ' + os.path.relpath(
          _REPO / 'kubernetes' / 'components' / 'trainer-replicas',
          tmp_path) + '\n')
  done = subprocess.run(['kubectl', 'kustomize', str(tmp_path)],
                        capture_output=True, text=True, timeout=60,
                        check=True)
  return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _permission(method: str, path: str):
  """(API group, resource, verb) of a request, as the API server's
  authorizer sees it (a GET of a collection is `list`)."""
  match = _API_PATH.match(path)
  resource = match['kind'] + (match['sub'] or '')
  verb = _VERBS.get(method) or ('get' if match['name'] else 'list')
  return match['group'] or '', resource, verb


@pytest.mark.skipif(shutil.which('kubectl') is None,
                    reason='kubectl renders the kustomization')
def test_the_runners_role_allows_every_call_of_a_launch_and_no_more(
    fake, launch, tmp_path):
  objects = _rbac(tmp_path)
  for obj in objects:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
  (role,) = [o for o in objects if o['kind'] == 'Role']
  (binding,) = [o for o in objects if o['kind'] == 'RoleBinding']
  assert binding['roleRef']['name'] == role['metadata']['name']
  allowed = {(group, resource, verb) for rule in role['rules']
             for group in rule['apiGroups'] for resource in rule['resources']
             for verb in rule['verbs']}
  outcome, pods, _ = _running(fake, launch, tmp_path)
  _wait_for(lambda: any(p.endswith('/log') for _, p in fake.requests),
            'a log followed')
  for pod in pods:
    fake.finish(NS, pod['metadata']['name'], 0)
  outcome['thread'].join(timeout=60)
  assert 'error' not in outcome, outcome
  used = {_permission(method, path) for method, path in fake.requests}
  assert used == allowed
