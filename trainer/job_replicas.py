"""A training as the N pods of an Indexed Job, from the Trainer's step on
Kubeflow.

The step's pod, which KFP names to its main container (KFP_POD_NAME,
KFP_POD_UID: kubeflow/pipelines@2.16.1:
backend/src/v2/compiler/argocompiler/common.go, commonEnvs), creates in its
namespace, both owned by itself, so that deleting the run deletes them:

- a headless Service, which gives each replica the DNS name
  `<job>-<index>.<service>`: the Job controller names an Indexed Job's pod
  `<job>-<index>` (kubernetes/kubernetes: pkg/controller/job/
  job_controller.go, manageJob) and the template's subdomain is the Service;
- an Indexed Job of N pods, each with JOB_COMPLETION_INDEX
  (pkg/controller/job/indexed_job_utils.go, addCompletionIndexEnvVariable),
  from which `replica` below builds its TF_CONFIG. They run the step's
  image with its resources (the GPU request included), node selector,
  tolerations, pull secrets and volumes.

The step follows the Job to its end, streaming every replica's log, and
deletes the Job and the Service whatever the end. A failed replica fails the
Job at once (backoffLimit 0: MultiWorkerMirroredStrategy takes no
replacement in), and the step with that replica's lines.

The step's artifacts are paths of its own pod (KFP's launcher downloads the
inputs there and uploads the outputs from there), so the replicas work in a
staging folder on the data volume, which the step and the replicas mount
read-write: the inputs are copied in, and the chief's outputs copied back.
While the step lives it touches a heartbeat file there; a replica whose step
is gone (a run terminated, its pod killed before it could delete the Job)
stops within HEARTBEAT_TIMEOUT_S.
"""
import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from imgcls.trainer import cluster
from imgcls.trainer.local_replicas import ReplicaFailed

POD_NAME_ENV = 'KFP_POD_NAME'
POD_UID_ENV = 'KFP_POD_UID'
# The replicas' addresses, host:port, in index order (`replica` below).
ADDRESSES_ENV = 'IMGCLS_REPLICA_ADDRESSES'
INDEX_ENV = 'JOB_COMPLETION_INDEX'
PORT = 2222
CONTAINER = 'replica'
# On every object and pod of one launch: what the Service selects.
LABEL = 'imgcls.trainer-replicas'
STAGING_DIR = '.imgcls-trainer-replicas'
HEARTBEAT_FILE = 'heartbeat'
HEARTBEAT_EVERY_S = 10.0
HEARTBEAT_TIMEOUT_S = 180.0
POLL_S = 2.0
TAIL_LINES = 30
_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace'


def in_kubeflow_step(environ: Optional[Mapping[str, str]] = None) -> bool:
  """Whether this process is a KFP step's, whose pod can own a Job."""
  environ = os.environ if environ is None else environ
  return bool(environ.get(POD_NAME_ENV) and environ.get(POD_UID_ENV))


def object_name(step_uid: str) -> str:
  """The Job's and the Service's name: one per step pod, so that a retried
  step never meets its previous attempt's. Short enough for `<name>-<index>`
  to stay a DNS label."""
  return 'imgcls-trainer-' + hashlib.sha256(step_uid.encode()).hexdigest()[:10]


def addresses(name: str, count: int) -> List[str]:
  return [f'{name}-{index}.{name}:{PORT}' for index in range(count)]


def _owner(step: Dict[str, Any]) -> List[Dict[str, Any]]:
  metadata = step['metadata']
  return [{'apiVersion': 'v1', 'kind': 'Pod', 'name': metadata['name'],
           'uid': metadata['uid']}]


def _main_container(step: Dict[str, Any]) -> Dict[str, Any]:
  """The step's container that runs its command: KFP's `main`."""
  containers = step['spec']['containers']
  named = [c for c in containers if c['name'] == 'main']
  return (named or containers)[0]


def _volumes(step: Dict[str, Any]):
  """The step's PersistentVolumeClaim volumes and its main container's
  mounts of them (KFP's own emptyDirs stay the step's)."""
  claims = {v['name']: v for v in step['spec'].get('volumes', [])
            if 'persistentVolumeClaim' in v}
  mounts = [m for m in _main_container(step).get('volumeMounts', [])
            if m['name'] in claims]
  return [claims[name] for name in dict.fromkeys(
      m['name'] for m in mounts)], mounts


def service_manifest(step: Dict[str, Any], name: str) -> Dict[str, Any]:
  return {
      'apiVersion': 'v1', 'kind': 'Service',
      'metadata': {'name': name, 'labels': {LABEL: name},
                   'ownerReferences': _owner(step)},
      'spec': {
          'clusterIP': 'None',
          'selector': {LABEL: name},
          'ports': [{'name': 'grpc', 'port': PORT, 'targetPort': PORT}],
          # DNS names before the pods are ready: each replica looks the
          # others up as it starts.
          'publishNotReadyAddresses': True,
      },
  }


def job_manifest(step: Dict[str, Any], name: str, count: int,
                 command: Sequence[str]) -> Dict[str, Any]:
  """N pods of the step's image, resources and placement, each running
  `command` as replica JOB_COMPLETION_INDEX."""
  main = _main_container(step)
  step_spec = step['spec']
  volumes, mounts = _volumes(step)
  env = [e for e in main.get('env', []) if 'value' in e]
  env.append({'name': ADDRESSES_ENV, 'value': ','.join(addresses(name,
                                                                 count))})
  container = {
      'name': CONTAINER, 'image': main['image'], 'command': list(command),
      'env': env, 'ports': [{'containerPort': PORT, 'name': 'grpc'}],
      'volumeMounts': mounts,
  }
  for key in ('imagePullPolicy', 'resources', 'securityContext'):
    if main.get(key):
      container[key] = main[key]
  pod_spec = {
      'subdomain': name, 'restartPolicy': 'Never',
      'automountServiceAccountToken': False,
      'containers': [container], 'volumes': volumes,
  }
  for key in ('nodeSelector', 'tolerations', 'affinity', 'imagePullSecrets',
              'securityContext', 'priorityClassName'):
    if step_spec.get(key):
      pod_spec[key] = step_spec[key]
  return {
      'apiVersion': 'batch/v1', 'kind': 'Job',
      'metadata': {'name': name, 'labels': {LABEL: name},
                   'ownerReferences': _owner(step)},
      'spec': {
          'completionMode': 'Indexed', 'completions': count,
          'parallelism': count, 'backoffLimit': 0,
          'template': {'metadata': {'labels': {LABEL: name}},
                       'spec': pod_spec},
      },
  }


# --------------------------------------------------------- the step's side --

class Launch:
  """One launch of the replicas from the step's pod, through the
  Kubernetes API (the pinned `kubernetes` client)."""

  def __init__(self, api_client, namespace: str, step_name: str,
               output: Callable[[str], None]):
    from kubernetes import client
    self.core = client.CoreV1Api(api_client)
    self.batch = client.BatchV1Api(api_client)
    self.namespace = namespace
    self.step = api_client.sanitize_for_serialization(
        self.core.read_namespaced_pod(step_name, namespace))
    self.name = object_name(self.step['metadata']['uid'])
    self.output = output
    self._tails: Dict[int, List[str]] = {}
    self._streams: Dict[str, threading.Thread] = {}

  def create(self, count: int, command: Sequence[str]) -> None:
    self.core.create_namespaced_service(
        self.namespace, service_manifest(self.step, self.name))
    self.batch.create_namespaced_job(
        self.namespace, job_manifest(self.step, self.name, count, command))

  def follow(self, alive: Callable[[], None] = lambda: None) -> None:
    """Returns once the Job has completed; raises ReplicaFailed once it has
    failed. `alive` is called on every poll (the heartbeat)."""
    while True:
      alive()
      job = self.batch.read_namespaced_job(self.name, self.namespace)
      pods = self._pods()
      for pod in pods:
        self._stream(pod)
      conditions = {c.type for c in job.status.conditions or []
                    if c.status == 'True'}
      if conditions & {'Failed', 'FailureTarget'}:
        raise self._failure(pods, job)
      if 'Complete' in conditions:
        for stream in self._streams.values():
          stream.join(timeout=30)
        return
      time.sleep(POLL_S)

  def delete(self) -> None:
    """The Job with its pods (deleted by the garbage collector, as for any
    object whose owner is gone), and the Service; either may be gone."""
    from kubernetes import client
    for delete in (
        lambda: self.batch.delete_namespaced_job(
            self.name, self.namespace, propagation_policy='Background'),
        lambda: self.core.delete_namespaced_service(self.name,
                                                    self.namespace)):
      try:
        delete()
      except client.ApiException as e:
        if e.status != 404:
          raise

  def _pods(self):
    return sorted(self.core.list_namespaced_pod(
        self.namespace, label_selector=f'{LABEL}={self.name}').items,
                  key=_index)

  def _stream(self, pod) -> None:
    """Follows a started pod's log on a thread of its own."""
    name = pod.metadata.name
    if name in self._streams or pod.status.phase == 'Pending':
      return
    tail = self._tails.setdefault(_index(pod), [])
    thread = threading.Thread(target=self._read_log, args=(name, _index(pod),
                                                           tail), daemon=True)
    self._streams[name] = thread
    thread.start()

  def _read_log(self, name: str, index: int, tail: List[str]) -> None:
    response = self.core.read_namespaced_pod_log(
        name, self.namespace, container=CONTAINER, follow=True,
        _preload_content=False)
    pending = b''
    for chunk in response.stream(4096):
      pending += chunk
      *lines, pending = pending.split(b'\n')
      for line in lines:
        self._line(index, tail, line.decode(errors='replace'))
    if pending:
      self._line(index, tail, pending.decode(errors='replace'))

  def _line(self, index: int, tail: List[str], line: str) -> None:
    tail.append(line)
    del tail[:-TAIL_LINES]
    self.output(f'[replica {index}] {line}')

  def _failure(self, pods, job) -> ReplicaFailed:
    failed = [p for p in pods if p.status.phase == 'Failed'] or pods
    pod = failed[0] if failed else None
    if pod is None:
      return ReplicaFailed(f'the Job {self.name} of the replicas failed '
                           f'before any replica started: {_reason(job)}')
    index = _index(pod)
    thread = self._streams.get(pod.metadata.name)
    if thread:
      thread.join(timeout=10)
    lines = '\n'.join(f'  {line}' for line in self._tails.get(index, []))
    return ReplicaFailed(
        f'replica {index} of {job.spec.completions} ({pod.metadata.name}) '
        f'{_ended(pod)}; the Job failed ({_reason(job)}), the other '
        'replicas were stopped and nothing of this training is kept. Its '
        'last lines:\n' + (lines or '  (none)'))


def _index(pod) -> int:
  return int((pod.metadata.annotations or {}).get(
      'batch.kubernetes.io/job-completion-index', -1))


def _ended(pod) -> str:
  for status in pod.status.container_statuses or []:
    terminated = status.state and status.state.terminated
    if terminated:
      return (f'ended with exit code {terminated.exit_code}'
              + (f' ({terminated.reason})' if terminated.reason else ''))
  return f'is {pod.status.phase}'


def _reason(job) -> str:
  for condition in job.status.conditions or []:
    if condition.type in ('Failed', 'FailureTarget'):
      return condition.reason or condition.type
  return 'no reason given'


def cluster_api():
  """The API client and namespace of the pod's ServiceAccount; outside a
  pod, those of the kubeconfig's current context, as kubectl's."""
  from kubernetes import client, config
  if os.environ.get('KUBERNETES_SERVICE_HOST'):
    config.load_incluster_config()
    with open(_NAMESPACE_FILE) as f:
      return client.ApiClient(), f.read().strip()
  config.load_kube_config()
  _, context = config.list_kube_config_contexts()
  return client.ApiClient(), context['context'].get('namespace', 'default')


class Staging:
  """The folders on the shared volume where the replicas find the step's
  inputs and leave their outputs: under `base`, the launch's own (its
  heartbeat and outputs), and the inputs at their path in the step's pod.

  At the same path on every retry of the step, the inputs keep the key of
  the Trainer's backup (trainer.task.backup_dir), so a retried step resumes
  from its last finished epoch; each run's artifacts have paths of their
  own (its ID is in them, and the compiled pipeline caches nothing).
  """

  def __init__(self, base: str, launch: str):
    self.base = base
    self.root = os.path.join(base, launch)
    self.heartbeat = os.path.join(self.root, HEARTBEAT_FILE)
    self._inputs: List[str] = []

  def stage_in(self, artifacts: Dict[str, list]) -> Dict[str, List[str]]:
    """Copies each input artifact in; returns the staged URIs."""
    return {key: [self._copy(a.uri) for a in items]
            for key, items in artifacts.items()}

  def outputs(self, artifacts: Dict[str, list]) -> Dict[str, List[str]]:
    return {key: [os.path.join(self.root, 'outputs', key, str(i))
                  for i, _ in enumerate(items)]
            for key, items in artifacts.items()}

  def stage_out(self, artifacts: Dict[str, list],
                staged: Dict[str, List[str]]) -> None:
    for key, items in artifacts.items():
      for artifact, uri in zip(items, staged[key]):
        if os.path.exists(uri):
          shutil.copytree(uri, artifact.uri, dirs_exist_ok=True)

  def touch(self) -> None:
    os.makedirs(self.root, exist_ok=True)
    with open(self.heartbeat, 'a'):
      os.utime(self.heartbeat)

  def remove(self) -> None:
    """The launch's folder, and its inputs with their emptied parents."""
    shutil.rmtree(self.root, ignore_errors=True)
    for path in self._inputs:
      shutil.rmtree(path, ignore_errors=True)
      parent = os.path.dirname(path)
      while (parent.startswith(self.base + os.sep) and os.path.isdir(parent)
             and not os.listdir(parent)):
        os.rmdir(parent)
        parent = os.path.dirname(parent)

  def _copy(self, source: str) -> str:
    target = os.path.join(self.base, 'inputs', source.lstrip('/'))
    shutil.rmtree(target, ignore_errors=True)  # a failed attempt's copy
    self._inputs.append(target)
    if os.path.isdir(source):
      shutil.copytree(source, target)
    elif os.path.exists(source):
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.copy2(source, target)
    return target


def run_from_step(count: int, command, input_dict: Dict[str, list],
                  output_dict: Dict[str, list],
                  output: Callable[[str], None]) -> None:
  """`run` from the step's own pod, through its ServiceAccount."""
  api_client, namespace = cluster_api()
  launch = Launch(api_client, namespace, os.environ[POD_NAME_ENV], output)
  from imgcls.contract import deployment
  staging = Staging(os.path.join(deployment.data_mount(), STAGING_DIR),
                    launch.name)
  run(launch, staging, count, command, input_dict, output_dict)


def run(launch: Launch, staging: Staging, count: int,
        command: Callable[[Dict[str, List[str]], Dict[str, List[str]]],
                          List[str]],
        input_dict: Dict[str, list], output_dict: Dict[str, list]) -> None:
  """Stages the inputs, runs the replicas to their end, stages the outputs
  back; the Job, the Service and the staging folder are gone afterwards,
  whatever the end, a SIGTERM of the step included. `command(inputs,
  outputs)`: each replica's command for the staged URIs."""
  beat = _Heartbeat(staging)
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
  try:
    staging.touch()
    inputs = staging.stage_in(input_dict)
    outputs = staging.outputs(output_dict)
    launch.create(count, [sys.executable, '-m', __name__, '--heartbeat',
                          staging.heartbeat, '--',
                          *command(inputs, outputs)])
    launch.follow(beat)
    staging.stage_out(output_dict, outputs)
  finally:
    launch.delete()
    staging.remove()


def _exit_on_sigterm(signum, frame) -> None:
  raise SystemExit(128 + signum)


class _Heartbeat:
  def __init__(self, staging: Staging):
    self.staging = staging
    self.last = 0.0

  def __call__(self) -> None:
    if time.monotonic() - self.last >= HEARTBEAT_EVERY_S:
      self.staging.touch()
      self.last = time.monotonic()


# ------------------------------------------------------- a replica's side --

def replica_environ(environ: Mapping[str, str]) -> Dict[str, str]:
  """The replica's environment with its TF_CONFIG, from the addresses and
  the index the Job gave its pod."""
  return {**environ, cluster.TF_CONFIG: cluster.tf_config(
      environ[ADDRESSES_ENV].split(','), int(environ[INDEX_ENV]))}


def supervise(command: Sequence[str], heartbeat: str,
              timeout_s: float = HEARTBEAT_TIMEOUT_S) -> int:
  """Runs the replica's command; stops it once the step's heartbeat is older
  than `timeout_s`. Returns the exit status to end with."""
  process = subprocess.Popen(list(command),
                             env=replica_environ(os.environ))
  signal.signal(signal.SIGTERM,
                lambda *_: process.send_signal(signal.SIGTERM))
  while process.poll() is None:
    try:
      age = time.time() - os.stat(heartbeat).st_mtime
    except FileNotFoundError:
      age = float('inf')
    if age > timeout_s:
      print(f'the Trainer step that started this replica is gone (no '
            f'heartbeat in {heartbeat} for {timeout_s:g} s): stopping',
            file=sys.stderr, flush=True)
      process.kill()
      process.wait()
      return 3
    time.sleep(min(HEARTBEAT_EVERY_S, timeout_s / 4))
  return process.returncode


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog=f'python -m {__name__}')
  parser.add_argument('--heartbeat', required=True)
  parser.add_argument('--timeout', type=float, default=HEARTBEAT_TIMEOUT_S)
  parser.add_argument('command', nargs='+')
  args = parser.parse_args(argv)
  return supervise(args.command, args.heartbeat, args.timeout)


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
