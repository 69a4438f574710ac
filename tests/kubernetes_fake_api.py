"""A stand-in for the Kubernetes API server, on 127.0.0.1: the calls that
trainer/job_replicas.py makes through the pinned `kubernetes` client, with
what the API server, the Job controller, the garbage collector and the
kubelet do behind them (kubernetes/kubernetes sources):

- creating a Job: a name already taken is 409 AlreadyExists; the API server
  generates the selector and adds the controller-uid and job-name labels to
  the pod template (pkg/registry/batch/job/strategy.go, generateSelector);
  an Indexed Job needs `completions` and a template whose restartPolicy is
  Never or OnFailure, else 422 Invalid (pkg/apis/batch/validation/
  validation.go);
- the Job controller then makes `parallelism` pods, one per index: named
  from `<job>-<index>-`, hostname `<job>-<index>`, the index in an annotation
  and a label, JOB_COMPLETION_INDEX in every container from the pod's
  metadata, and the Job as their controlling owner (pkg/controller/job/
  job_controller.go, manageJob; indexed_job_utils.go);
- a failed pod beyond backoffLimit gives the Job the conditions FailureTarget
  then Failed (reason BackoffLimitExceeded), and its other pods are deleted;
  all indexes succeeded give SuccessCriteriaMet then Complete
  (job_controller.go, syncJob);
- deleting a Job orphans its pods unless the request says
  propagationPolicy Background or Foreground: batch/v1's default
  (pkg/registry/batch/job/strategy.go, DefaultGarbageCollectionPolicy);
  deleting any object deletes, in the background, the objects whose
  ownerReferences name its uid (pkg/controller/garbagecollector);
- a pod's log is 400 BadRequest while its container is waiting to start
  (pkg/kubelet/kubelet_pods.go, validateContainerLogStatus); followed, it
  streams until the container has terminated.

The kubelet's part is the test's: `start`, `log` and `finish` a pod. Nothing
runs; the replicas themselves run for real as local processes elsewhere
(tests/test_training_replicas.py).
"""
import copy
import datetime
import http.server
import itertools
import json
import re
import threading
from typing import Any, Dict, List, Optional, Tuple
import urllib.parse
import uuid

INDEX_KEY = 'batch.kubernetes.io/job-completion-index'
_PATHS = re.compile(
    r'^/(?:api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<kind>pods|'
    r'services|jobs)(?:/(?P<name>[^/]+))?(?P<log>/log)?$')
_DNS_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime(
      '%Y-%m-%dT%H:%M:%SZ')


class FakeKubernetes:
  """The objects, by (kind, namespace, name), and the server's behaviour."""

  def __init__(self):
    self.objects: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
    self.logs: Dict[Tuple[str, str], List[str]] = {}
    self.requests: List[Tuple[str, str]] = []
    self.lock = threading.Condition()
    self._suffix = itertools.count()
    self._server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                   _handler(self))
    self.url = f'http://127.0.0.1:{self._server.server_address[1]}'
    threading.Thread(target=self._server.serve_forever, daemon=True).start()

  def close(self) -> None:
    self._server.shutdown()
    self._server.server_close()

  def api_client(self):
    from kubernetes import client
    configuration = client.Configuration()
    configuration.host = self.url
    return client.ApiClient(configuration)

  # --- what exists -------------------------------------------------------

  def add(self, kind: str, namespace: str, obj: Dict[str, Any]
         ) -> Dict[str, Any]:
    obj = copy.deepcopy(obj)
    metadata = obj.setdefault('metadata', {})
    metadata.update(namespace=namespace, uid=str(uuid.uuid4()),
                    creationTimestamp=_now())
    self.objects[(kind, namespace, metadata['name'])] = obj
    return obj

  def get(self, kind: str, namespace: str, name: str
         ) -> Optional[Dict[str, Any]]:
    with self.lock:
      return copy.deepcopy(self.objects.get((kind, namespace, name)))

  def names(self, kind: str, namespace: str) -> List[str]:
    with self.lock:
      return sorted(name for k, ns, name in self.objects
                    if (k, ns) == (kind, namespace))

  def delete(self, kind: str, namespace: str, name: str,
             propagation: Optional[str] = 'Background') -> bool:
    """As the API server and then the garbage collector delete."""
    with self.lock:
      obj = self.objects.pop((kind, namespace, name), None)
      if obj is None:
        return False
      if propagation in ('Background', 'Foreground'):
        uid = obj['metadata']['uid']
        for key, other in list(self.objects.items()):
          owners = other['metadata'].get('ownerReferences', [])
          if key[1] == namespace and any(o['uid'] == uid for o in owners):
            self.delete(key[0], namespace, key[2])
      self.lock.notify_all()
      return True

  # --- the kubelet's part ------------------------------------------------

  def pods_of(self, namespace: str, job: str) -> List[Dict[str, Any]]:
    with self.lock:
      pods = [p for (k, ns, _), p in self.objects.items()
              if (k, ns) == ('pods', namespace) and
              p['metadata'].get('labels', {}).get('job-name') == job]
      return copy.deepcopy(sorted(
          pods, key=lambda p: int(p['metadata']['annotations'][INDEX_KEY])))

  def start(self, namespace: str, pod: str) -> None:
    with self.lock:
      obj = self.objects[('pods', namespace, pod)]
      obj['status'] = {'phase': 'Running', 'containerStatuses': [
          _container_status(c['name'], {'running': {'startedAt': _now()}})
          for c in obj['spec']['containers']]}
      self.lock.notify_all()

  def log(self, namespace: str, pod: str, *lines: str) -> None:
    with self.lock:
      self.logs.setdefault((namespace, pod), []).extend(lines)
      self.lock.notify_all()

  def finish(self, namespace: str, pod: str, exit_code: int,
             reason: Optional[str] = None) -> None:
    """The pod's container ends; the Job controller syncs its Job."""
    with self.lock:
      obj = self.objects[('pods', namespace, pod)]
      terminated = {'exitCode': exit_code, 'finishedAt': _now()}
      if reason:
        terminated['reason'] = reason
      obj['status'] = {
          'phase': 'Succeeded' if exit_code == 0 else 'Failed',
          'containerStatuses': [
              _container_status(c['name'], {'terminated': terminated})
              for c in obj['spec']['containers']]}
      owner = obj['metadata']['ownerReferences'][0]['name']
      self._sync_job(namespace, owner)
      self.lock.notify_all()

  # --- the Job controller ------------------------------------------------

  def _create_job(self, namespace: str, job: Dict[str, Any]) -> None:
    uid = job['metadata']['uid']
    name = job['metadata']['name']
    spec = job['spec']
    labels = {'batch.kubernetes.io/controller-uid': uid,
              'batch.kubernetes.io/job-name': name,
              'controller-uid': uid, 'job-name': name}
    spec['selector'] = {'matchLabels': {
        'batch.kubernetes.io/controller-uid': uid}}
    spec['template'].setdefault('metadata', {}).setdefault(
        'labels', {}).update(labels)
    spec.setdefault('parallelism', 1)
    spec.setdefault('backoffLimit', 6)
    job['status'] = {'active': spec['parallelism'], 'startTime': _now()}
    for index in range(min(spec['parallelism'], spec['completions'])):
      self._create_pod(namespace, job, index)

  def _create_pod(self, namespace: str, job: Dict[str, Any],
                  index: int) -> None:
    template = copy.deepcopy(job['spec']['template'])
    metadata = template['metadata']
    metadata['annotations'] = {**metadata.get('annotations', {}),
                               INDEX_KEY: str(index)}
    metadata['labels'][INDEX_KEY] = str(index)
    spec = template['spec']
    spec['hostname'] = f'{job["metadata"]["name"]}-{index}'
    for container in spec['containers']:
      container.setdefault('env', []).append({
          'name': 'JOB_COMPLETION_INDEX', 'valueFrom': {'fieldRef': {
              'fieldPath': f"metadata.labels['{INDEX_KEY}']"}}})
    metadata['name'] = (f'{job["metadata"]["name"]}-{index}-'
                        f'{next(self._suffix):05d}')
    metadata['ownerReferences'] = [{
        'apiVersion': 'batch/v1', 'kind': 'Job',
        'name': job['metadata']['name'], 'uid': job['metadata']['uid'],
        'controller': True, 'blockOwnerDeletion': True}]
    pod = self.add('pods', namespace, {'metadata': metadata, 'spec': spec})
    pod['status'] = {'phase': 'Pending', 'containerStatuses': [
        _container_status(c['name'], {'waiting': {
            'reason': 'ContainerCreating'}}) for c in spec['containers']]}

  def _sync_job(self, namespace: str, name: str) -> None:
    job = self.objects.get(('jobs', namespace, name))
    if job is None:
      return
    pods = [p for (k, ns, _), p in self.objects.items()
            if (k, ns) == ('pods', namespace) and
            p['metadata'].get('labels', {}).get('job-name') == name]
    phases = [p['status']['phase'] for p in pods]
    status = job['status']
    status['succeeded'] = phases.count('Succeeded')
    status['failed'] = phases.count('Failed')
    status['active'] = len(pods) - status['succeeded'] - status['failed']
    status['completedIndexes'] = ','.join(sorted(
        (p['metadata']['annotations'][INDEX_KEY] for p in pods
         if p['status']['phase'] == 'Succeeded'), key=int))
    conditions = status.setdefault('conditions', [])
    if conditions:
      return  # finished: Complete and Failed are terminal
    if status['failed'] > job['spec']['backoffLimit']:
      conditions += [_condition('FailureTarget', 'BackoffLimitExceeded'),
                     _condition('Failed', 'BackoffLimitExceeded')]
      for pod in pods:
        if pod['status']['phase'] not in ('Succeeded', 'Failed'):
          self.objects.pop(('pods', namespace, pod['metadata']['name']))
      status['active'] = 0
    elif status['succeeded'] == job['spec']['completions']:
      conditions += [_condition('SuccessCriteriaMet', 'CompletionsReached'),
                     _condition('Complete', 'CompletionsReached')]
      status['completionTime'] = _now()

  # --- the API server's checks -------------------------------------------

  def create(self, kind: str, namespace: str, obj: Dict[str, Any]
            ) -> Tuple[int, Dict[str, Any]]:
    with self.lock:
      name = obj.get('metadata', {}).get('name', '')
      if (kind, namespace, name) in self.objects:
        return 409, _status(409, 'AlreadyExists',
                            f'{kind} "{name}" already exists')
      problem = _invalid(kind, obj)
      if problem:
        return 422, _status(422, 'Invalid', f'{kind} "{name}" is invalid: '
                            f'{problem}')
      created = self.add(kind, namespace, obj)
      if kind == 'jobs':
        self._create_job(namespace, created)
      self.lock.notify_all()
      return 201, copy.deepcopy(created)

  def follow_log(self, namespace: str, pod: str):
    """The log's lines as they come, until the container has terminated."""
    sent = 0
    while True:
      with self.lock:
        lines = self.logs.get((namespace, pod), [])
        new, sent = lines[sent:], len(lines)
        obj = self.objects.get(('pods', namespace, pod))
        done = obj is None or obj['status']['phase'] in ('Succeeded',
                                                          'Failed')
        if not new and not done:
          self.lock.wait(timeout=1)
          continue
      for line in new:
        yield line
      if done and not new:
        return


def _invalid(kind: str, obj: Dict[str, Any]) -> Optional[str]:
  name = obj.get('metadata', {}).get('name', '')
  if not _DNS_LABEL.match(name) or len(name) > 63:
    return 'metadata.name: must be a DNS-1123 label'
  if kind != 'jobs':
    return None
  spec = obj.get('spec', {})
  pod_spec = spec.get('template', {}).get('spec', {})
  if pod_spec.get('restartPolicy') not in ('Never', 'OnFailure'):
    return 'spec.template.spec.restartPolicy: must be Never or OnFailure'
  if spec.get('completionMode') == 'Indexed' and not spec.get('completions'):
    return 'spec.completions: required when completion mode is Indexed'
  return None


def _container_status(name: str, state: Dict[str, Any]) -> Dict[str, Any]:
  return {'name': name, 'image': 'imgcls:test', 'imageID': '',
          'ready': 'running' in state, 'restartCount': 0, 'state': state}


def _condition(kind: str, reason: str) -> Dict[str, Any]:
  return {'type': kind, 'status': 'True', 'reason': reason,
          'lastTransitionTime': _now()}


def _status(code: int, reason: str, message: str) -> Dict[str, Any]:
  return {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure',
          'message': message, 'reason': reason, 'code': code}


def _list_kind(kind: str) -> str:
  return {'pods': 'PodList', 'services': 'ServiceList',
          'jobs': 'JobList'}[kind]


def _selected(obj: Dict[str, Any], selector: str) -> bool:
  labels = obj['metadata'].get('labels', {})
  for term in filter(None, selector.split(',')):
    key, _, value = term.partition('=')
    if labels.get(key) != value:
      return False
  return True


def _handler(fake: FakeKubernetes):

  class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
      pass

    def _route(self):
      url = urllib.parse.urlsplit(self.path)
      match = _PATHS.match(url.path)
      fake.requests.append((self.command, url.path))
      query = dict(urllib.parse.parse_qsl(url.query))
      return match, query

    def _reply(self, code: int, body: Dict[str, Any]) -> None:
      data = json.dumps(body).encode()
      self.send_response(code)
      self.send_header('Content-Type', 'application/json')
      self.send_header('Content-Length', str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def _not_found(self, kind: str, name: str) -> None:
      self._reply(404, _status(404, 'NotFound',
                               f'{kind} "{name}" not found'))

    def do_GET(self):
      match, query = self._route()
      if not match:
        return self._reply(404, _status(404, 'NotFound', self.path))
      ns, kind, name = match['ns'], match['kind'], match['name']
      if not name:
        items = [o for (k, n, _), o in list(fake.objects.items())
                 if (k, n) == (kind, ns) and
                 _selected(o, query.get('labelSelector', ''))]
        return self._reply(200, {'kind': _list_kind(kind),
                                 'apiVersion': 'v1', 'metadata': {},
                                 'items': items})
      obj = fake.get(kind, ns, name)
      if obj is None:
        return self._not_found(kind, name)
      if match['log']:
        return self._log(ns, obj, query)
      self._reply(200, obj)

    def _log(self, ns: str, pod: Dict[str, Any], query) -> None:
      name = pod['metadata']['name']
      containers = [c['name'] for c in pod['spec']['containers']]
      container = query.get('container', containers[0])
      if container not in containers:
        return self._reply(400, _status(
            400, 'BadRequest', f'container {container} is not valid for pod '
            f'{name}'))
      if pod['status']['phase'] == 'Pending':
        return self._reply(400, _status(
            400, 'BadRequest', f'container "{container}" in pod "{name}" is '
            'waiting to start: ContainerCreating'))
      self.send_response(200)
      self.send_header('Content-Type', 'text/plain')
      self.send_header('Transfer-Encoding', 'chunked')
      self.end_headers()
      lines = (fake.follow_log(ns, name) if query.get('follow') == 'true'
               else iter(list(fake.logs.get((ns, name), []))))
      for line in lines:
        data = (line + '\n').encode()
        self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
        self.wfile.flush()
      self.wfile.write(b'0\r\n\r\n')

    def do_POST(self):
      match, _ = self._route()
      if not match or match['name']:
        return self._reply(405, _status(405, 'MethodNotAllowed', self.path))
      body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
      self._reply(*fake.create(match['kind'], match['ns'], body))

    def do_DELETE(self):
      match, query = self._route()
      length = int(self.headers.get('Content-Length') or 0)
      options = json.loads(self.rfile.read(length)) if length else {}
      propagation = query.get('propagationPolicy',
                              options.get('propagationPolicy'))
      if propagation is None and match['kind'] != 'jobs':
        propagation = 'Background'  # every other kind's default
      if not fake.delete(match['kind'], match['ns'], match['name'],
                         propagation):
        return self._not_found(match['kind'], match['name'])
      self._reply(200, {'kind': 'Status', 'apiVersion': 'v1',
                        'status': 'Success', 'code': 200})

  return Handler
