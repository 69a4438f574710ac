"""`imgcls compile --workers 2`: the compiled Trainer step, run as KFP 2.16.1's
launcher runs it (tests/test_kubeflow.py's Launcher), launches an Indexed
Job of 2 replicas through the Kubernetes API, follows it to its end and
hands on the chief's model.

The API is tests/kubernetes_fake_api.py, the Job controller's and the
garbage collector's part included; the nodes are this machine: a stand-in
kubelet runs each pod's container command as a local process, with the
pod's env, its JOB_COMPLETION_INDEX, and, for the cluster DNS, every
replica's address <job>-<index>.<service>:2222 mapped to a port of
127.0.0.1. The replicas train for real (TFX's executor and run_fn).
"""
import json
import os
import subprocess
import threading

import pytest

from imgcls.contract import deployment
from imgcls.pipeline import kubeflow
from imgcls.trainer import job_replicas, local_replicas
from tests import images
from tests.kubernetes_fake_api import FakeKubernetes
from tests.test_kubeflow import (  # noqa: F401 - bucket is a fixture
  Launcher,
  _compile,
  _k8s,
  _load,
  bucket,
)

pytestmark = pytest.mark.slow

NS = 'team-a'
STEP = 'imgcls-run-1-system-container-impl-42'
WORKERS = 2
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LocalKubelet:
  """Runs the pods the fake's Job controller makes as local processes."""

  def __init__(self, fake: FakeKubernetes):
    self.fake = fake
    self.ports = {}  # address in the cluster -> 127.0.0.1:port
    self.processes = {}
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._thread.start()

  def close(self):
    self._stop.set()
    self._thread.join()
    for process in self.processes.values():
      if process.poll() is None:
        process.kill()

  def _loop(self):
    while not self._stop.wait(0.2):
      for name in self.fake.names('pods', NS):
        pod = self.fake.get('pods', NS, name)
        if (name not in self.processes and pod and
            pod.get('status', {}).get('phase') == 'Pending'):
          self._start(pod)
      for name, process in self.processes.items():
        if self.fake.get('pods', NS, name) is None and process.poll() is None:
          process.kill()  # deleted: the kubelet stops its containers

  def _start(self, pod):
    name = pod['metadata']['name']
    (container,) = pod['spec']['containers']
    env = dict(os.environ)
    for entry in container['env']:
      if 'value' in entry:
        env[entry['name']] = entry['value']
    env[job_replicas.INDEX_ENV] = pod['metadata']['labels'][
        'batch.kubernetes.io/job-completion-index']
    env[job_replicas.ADDRESSES_ENV] = ','.join(
        self._local(address) for address in
        env[job_replicas.ADDRESSES_ENV].split(','))
    process = subprocess.Popen(
        container['command'], env=env, cwd=_REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    self.processes[name] = process
    self.fake.start(NS, name)
    threading.Thread(target=self._follow, args=(name, process),
                     daemon=True).start()

  def _local(self, address):
    if address not in self.ports:
      (port,) = local_replicas.free_ports(1)
      self.ports[address] = f'127.0.0.1:{port}'
    return self.ports[address]

  def _follow(self, name, process):
    for line in process.stdout:
      self.fake.log(NS, name, line.rstrip('\n'))
    code = process.wait()
    if self.fake.get('pods', NS, name) is not None:
      self.fake.finish(NS, name, code)


@pytest.fixture
def cluster(tmp_path):
  """The fake API with the Trainer step's pod, a kubeconfig naming it, and
  the kubelet."""
  fake = FakeKubernetes()
  fake.add('pods', NS, {
      'metadata': {'name': STEP},
      'spec': {
          'volumes': [{'name': 'imgcls-data', 'persistentVolumeClaim': {
              'claimName': 'imgcls-data'}}],
          'containers': [{
              'name': 'main', 'image': 'imgcls:test',
              'env': [{'name': 'TF_CPP_MIN_LOG_LEVEL', 'value': '1'}],
              'volumeMounts': [{'name': 'imgcls-data',
                                'mountPath': str(tmp_path / 'data')}]}]},
      'status': {'phase': 'Running'}})
  kubeconfig = tmp_path / 'kubeconfig'
  kubeconfig.write_text(json.dumps({
      'apiVersion': 'v1', 'kind': 'Config',
      'clusters': [{'name': 'fake', 'cluster': {'server': fake.url}}],
      'users': [{'name': 'runner', 'user': {}}],
      'contexts': [{'name': 'fake', 'context': {
          'cluster': 'fake', 'user': 'runner', 'namespace': NS}}],
      'current-context': 'fake'}))
  kubelet = LocalKubelet(fake)
  yield fake, kubeconfig
  kubelet.close()
  fake.close()


def _params(tmp_path):
  """The params file with the data volume's mount in tmp_path: where the
  step stages the replicas' inputs and outputs."""
  params = tmp_path / 'params.env'
  text = deployment.params_file().read_text()
  params.write_text(text.replace('DATA_MOUNT=/data',
                                 f'DATA_MOUNT={tmp_path / "data"}'))
  return params


def test_the_compiled_trainer_step_runs_the_replicas_executor(tmp_path):
  """Its executor launches the replicas; it mounts the data volume, where
  they meet, and keeps its GPU placement, which they copy."""
  spec, platform = _load(_compile(tmp_path / 'p.yaml', '--workers', '2',
                                  '--gpus', '1'))
  label = kubeflow.executor_label(spec, 'Trainer')
  container = kubeflow.deployment_config(spec).executors[label].container
  args = list(container.args)
  assert args[args.index('--executor_class_path') + 1] == (
      'imgcls.trainer.executor.Executor')
  custom_config = spec.root.dag.tasks['Trainer'].inputs.parameters[
      'custom_config'].runtime_value.constant.string_value
  assert json.loads(custom_config)['workers'] == 2
  config = _k8s(platform, label)
  assert [m.mount_path for m in config.pvc_mount] == [
      deployment.data_mount()]
  assert config.tolerations and config.node_selector.labels
  assert container.resources.accelerator.resource_count == '1'


@pytest.mark.e2e
def test_the_trainer_step_trains_as_an_indexed_job_of_two_replicas(
    tmp_path, bucket, cluster):  # noqa: F811
  fake, kubeconfig = cluster
  data = tmp_path / 'data'
  images.write_class_folders(str(data / 'train'), {'a': 21, 'b': 20})
  images.write_class_folders(str(data / 'test'), {'a': 4, 'b': 4}, seed=1)
  spec, _ = _load(_compile(tmp_path / 'p.yaml', '--workers', str(WORKERS),
                           '--epochs', '2', '--batch-size', '8'))
  env = {k: v for k, v in os.environ.items()
         if k != 'KUBERNETES_SERVICE_HOST'}
  env.update({job_replicas.POD_NAME_ENV: STEP,
              job_replicas.POD_UID_ENV: 'uid-of-the-step',
              'KUBECONFIG': str(kubeconfig),
              deployment.PARAMS_FILE_ENV: str(_params(tmp_path))})
  launcher = Launcher(spec, {'/data': str(data)}, bucket,
                      params={'data_root': str(data)}, env=env)
  launcher.run('ImageExampleGen')
  outputs = launcher.run('Trainer')

  model = outputs['model']['uri']
  local = model.replace('minio://', '/minio/')
  assert os.path.exists(os.path.join(local, 'Format-Serving',
                                     'saved_model.pb'))
  name = job_replicas.object_name(fake.get('pods', NS, STEP)['metadata'][
      'uid'])
  created = [path for method, path in fake.requests if method == 'POST']
  assert created == [f'/api/v1/namespaces/{NS}/services',
                     f'/apis/batch/v1/namespaces/{NS}/jobs']
  # Followed to the end, then deleted with its pods and the Service.
  assert fake.names('jobs', NS) == fake.names('services', NS) == []
  assert fake.names('pods', NS) == [STEP]
  assert ('DELETE', f'/apis/batch/v1/namespaces/{NS}/jobs/{name}') in (
      fake.requests)
  assert not os.listdir(data / job_replicas.STAGING_DIR)
  logs = [line for lines in fake.logs.values() for line in lines]
  for replica in range(WORKERS):
    assert any(f'training as replica {replica} of {WORKERS}' in line
               for line in logs)
