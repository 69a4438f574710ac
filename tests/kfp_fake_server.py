"""A stand-in for the Kubeflow Pipelines 2 API server, on 127.0.0.1.

It answers the v2beta1 REST calls kfp.Client makes to upload a pipeline and
start runs, with the JSON field names of kfp_server_api's models, and records
what it was sent. Uploads are checked the way KFP 2.16.1's API server checks
them (backend/src/apiserver/template/v2_template.go, NewV2SpecTemplate): each
YAML document must parse strictly as a PipelineSpec or a PlatformSpec, the
schema version must be 2.1.0, and the pipeline must have a name and a root.
Runs, namespaces and retries behave as the 2.16.1 API server's handlers and
resource manager make them (backend/src/apiserver/resource/
resource_manager.go, storage/run_store.go):

- a run starts PENDING; tests move it on with `set_state`, as Argo would;
- TerminateRun (resource_manager.go TerminateRun, run_store.go TerminateRun)
  first writes CANCELING to the database, for a PENDING, RUNNING, PAUSED or
  unspecified run only: any other state is HTTP 400 "Row not found". It then
  patches the run's workflow; when the workflow is gone (`lose_workflow`),
  that fails with HTTP 500 and the run stays CANCELING, since only the
  persistence agent's report of the workflow would move it on;
- RetryRun needs a run whose workflow may be retried (Argo's CanRetry: a
  FAILED run here), else answers HTTP 500, and puts the run back to RUNNING
  under the same ID;
- with `namespace_required` (a multi-user install whose API server requires
  namespaced pipelines, apiserver/validation/namespace.go), an upload without
  a namespace is refused; pipelines, experiments and runs are listed per
  namespace.

Authentication is the multi-user API server's: with `token` set, a request
must carry `Authorization: Bearer <token>` (auth/authenticator_token_review.go,
the header and prefix of apiserver/common/const.go), else it is
Unauthenticated (resource/resource_manager.go, IsAuthorized); a test that
renews the token sets `token` anew, and the old one is refused from then on,
as an
expired one would be. Every request's Authorization header is recorded.

It also answers as the Kubernetes API server's service proxy in front of KFP
(/api/v1/namespaces/<ns>/services/ml-pipeline:http/proxy/..., the path
kfp.Client takes without a host, sdk/python/kfp/client/client.py,
_KUBE_PROXY_PATH), recording the namespace each proxied call went to. As
the API server does, it drops the Authorization header once it has
authenticated the caller (kubernetes staging/src/k8s.io/apiserver/pkg/
endpoints/filters/authentication.go, WithAuthentication), so KFP behind it
sees no token.

It is a protocol-level check of the client side, not a KFP backend: nothing
is scheduled or run.
"""
import datetime
import email.parser
import email.policy
import http.server
import itertools
import json
import re
import threading
from typing import Any, Dict, List, Optional, Set
import urllib.parse

from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
import yaml

_API = '/apis/v2beta1'
# kfp appends its API paths to a proxy path that ends in '/', so they arrive
# with '//' (client.py, _load_config): the same resource.
_PROXY = re.compile(r'^/api/v1/namespaces/([^/]+)/services/ml-pipeline:http/'
                    r'proxy/+(.*)$')


class SpecError(ValueError):
  pass


def check_package(data: bytes) -> Dict[str, Any]:
  """The pipeline spec document of a package, or SpecError as KFP says it."""
  spec = None
  for document in yaml.safe_load_all(data):
    if not document:
      continue
    if 'pipelineInfo' in document or 'root' in document:
      if spec is not None:
        raise SpecError('multiple pipeline specs provided')
      try:
        parsed = json_format.ParseDict(document,
                                       pipeline_spec_pb2.PipelineSpec())
      except json_format.ParseError as e:
        raise SpecError(f'invalid v2 pipeline spec: {e}') from e
      if parsed.schema_version != '2.1.0':
        raise SpecError('KFP only supports schema version 2.1.0, but the '
                        f'pipeline spec has version {parsed.schema_version}')
      if not parsed.pipeline_info.name:
        raise SpecError('invalid v2 pipeline spec: name is empty')
      if not parsed.HasField('root'):
        raise SpecError('invalid v2 pipeline spec: root component is empty')
      spec = document
    else:
      try:
        platform = json_format.ParseDict(document,
                                         pipeline_spec_pb2.PlatformSpec())
        for config in platform.platforms[
            'kubernetes'].deployment_spec.executors.values():
          json_format.ParseDict(
              json_format.MessageToDict(config),
              kubernetes_executor_config_pb2.KubernetesExecutorConfig())
      except json_format.ParseError as e:
        raise SpecError(f'cannot unmarshal platform specific configs: {e}'
                       ) from e
  if spec is None:
    raise SpecError('no pipeline spec is provided')
  return spec


class FakeKfp:
  """Serves until stop(); `host` is its URL. With `token`, every call needs
  `Authorization: Bearer <token>` or gets 401."""

  def __init__(self, token: Optional[str] = None,
               namespace_required: bool = False, version: str = '2.16.1'):
    self.token = token
    self.namespace_required = namespace_required
    # The API server's TAG_NAME, which its health endpoint reports.
    self.version = version
    self.pipelines: List[Dict[str, Any]] = []
    # pipeline_id -> versions, oldest first; each with the uploaded bytes.
    self.versions: Dict[str, List[Dict[str, Any]]] = {}
    self.experiments: List[Dict[str, Any]] = []
    self.runs: List[Dict[str, Any]] = []
    self.recurring_runs: List[Dict[str, Any]] = []
    self.calls: List[str] = []
    # The Authorization header of each call, None when there was none.
    self.authorizations: List[Optional[str]] = []
    # The namespace of the ml-pipeline Service each proxied call went to.
    self.proxied_to: List[str] = []
    # Runs whose Argo workflow no longer exists.
    self.lost_workflows: Set[str] = set()
    self._ids = itertools.count(1)
    self._server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                   self._handler())
    self._thread = threading.Thread(target=self._server.serve_forever,
                                    kwargs={'poll_interval': 0.05},
                                    daemon=True)
    self._thread.start()

  @property
  def host(self) -> str:
    return f'http://127.0.0.1:{self._server.server_address[1]}'

  def stop(self) -> None:
    self._server.shutdown()
    self._server.server_close()

  def set_created_at(self, run_id: str, created_at: str) -> None:
    """An RFC 3339 time, as the API server writes it."""
    self._run(run_id)['created_at'] = created_at

  def set_state(self, run_id: str, state: str, error: str = '',
                failed_task: str = '') -> None:
    """What Argo and the persistence agent would report for the run; a
    failed task appears in run_details as the API server lists the run's
    MLMD executions (apiserver/server/api_converter.go)."""
    run = self._run(run_id)
    run['state'] = state
    if error:
      run['error'] = {'code': 2, 'message': error}
    if failed_task:
      run['run_details'] = {'task_details': [{
          'run_id': run_id, 'task_id': self._new_id('task'),
          'display_name': failed_task, 'state': 'FAILED',
          'error': {'code': 2, 'message': error}}]}

  def lose_workflow(self, run_id: str) -> None:
    """The run's workflow is deleted, or was never reported: the persistence
    agent has nothing to say about the run from now on."""
    self._run(run_id)
    self.lost_workflows.add(run_id)

  def uploaded(self, pipeline_id: str) -> List[bytes]:
    return [v['package'] for v in self.versions[pipeline_id]]

  def _new_id(self, kind: str) -> str:
    return f'{kind}-{next(self._ids)}'

  def _handler(self):
    fake = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *args):
        del args

      def do_GET(self):
        self._dispatch('GET')

      def do_POST(self):
        self._dispatch('POST')

      def do_DELETE(self):
        self._dispatch('DELETE')

      def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        proxied = _PROXY.match(path)
        if proxied:
          fake.proxied_to.append(proxied.group(1))
          path = '/' + proxied.group(2)
        authorization = None if proxied else self.headers.get(
            'Authorization')
        fake.calls.append(f'{method} {path}')
        fake.authorizations.append(authorization)
        if fake.token and authorization != f'Bearer {fake.token}':
          return self._send(401, {'code': 16, 'message': 'Unauthenticated: '
                                  'request is not authenticated'})
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        route = (method, path.removeprefix(_API))
        try:
          status, answer = fake._route(route, query, body,
                                       self.headers.get('Content-Type', ''))
        except SpecError as e:
          status, answer = 400, {'error_message': str(e),
                                 'error_details': str(e)}
        except _ApiError as e:
          status, answer = e.status, {'error_message': str(e),
                                      'error_details': str(e)}
        self._send(status, answer)

      def _send(self, status: int, answer: Dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    return Handler

  def _route(self, route, query, body: bytes, content_type: str):
    method, path = route
    if route == ('GET', '/healthz'):
      # Written by hand in backend/src/apiserver/main.go, with fields that
      # the v2beta1 GetHealthzResponse message lacks.
      return 200, {'commit_sha': 'unknown', 'tag_name': self.version,
                   'multi_user': self.namespace_required,
                   'pipeline_store': 'database'}
    if route == ('GET', '/pipelines'):
      return 200, _listing('pipelines', self._in_namespace(
          self.pipelines, query), query)
    if route == ('POST', '/pipelines/upload'):
      package = _uploaded_file(body, content_type)
      check_package(package)
      self._check_namespace(query.get('namespace', ''))
      pipeline = {'pipeline_id': self._new_id('pipeline'),
                  'display_name': query['name'],
                  'namespace': query.get('namespace', '')}
      self.pipelines.append(pipeline)
      self.versions[pipeline['pipeline_id']] = []
      self._add_version(pipeline['pipeline_id'], query['name'], package)
      return 200, pipeline
    if route == ('POST', '/pipelines/upload_version'):
      package = _uploaded_file(body, content_type)
      check_package(package)
      if query['pipelineid'] not in self.versions:
        return 404, {'error_message': 'pipeline not found'}
      return 200, self._add_version(query['pipelineid'], query['name'],
                                    package)
    if method == 'GET' and path.startswith('/pipelines/') and path.endswith(
        '/versions'):
      versions = [{k: v for k, v in version.items() if k != 'package'}
                  for version in self.versions[path.split('/')[2]]]
      if query.get('sort_by') == 'created_at desc':
        versions.reverse()
      return 200, {'pipeline_versions':
                       versions[:int(query.get('page_size', 10))],
                   'total_size': len(versions)}
    if route == ('GET', '/experiments'):
      return 200, _listing('experiments', self._in_namespace(
          self.experiments, query), query)
    if route == ('POST', '/experiments'):
      experiment = {**json.loads(body),
                    'experiment_id': self._new_id('experiment')}
      self.experiments.append(experiment)
      return 200, experiment
    if route == ('POST', '/runs'):
      run = json.loads(body)
      self._check_reference(run)
      experiment = self._experiment(run.get('experiment_id', ''))
      run.update(run_id=self._new_id('run'), state='PENDING',
                 namespace=experiment.get('namespace', ''),
                 created_at=_now_rfc3339())
      self.runs.append(run)
      return 200, run
    if route == ('GET', '/runs'):
      runs = [r for r in self._in_namespace(self.runs, query)
              if query.get('experiment_id') in (None, r['experiment_id'])]
      if query.get('sort_by') == 'created_at desc':
        runs = runs[::-1]
      return 200, {'runs': runs[:int(query.get('page_size', 10))],
                   'total_size': len(runs)} if runs else {}
    if method == 'GET' and path.startswith('/runs/'):
      return 200, self._run(path.split('/')[2])
    if method == 'POST' and path.startswith('/runs/'):
      run_id, _, action = path.split('/')[2].partition(':')
      return 200, self._act(self._run(run_id), action)
    if route == ('POST', '/recurringruns'):
      recurring = json.loads(body)
      self._check_reference(recurring)
      recurring['recurring_run_id'] = self._new_id('recurring')
      self.recurring_runs.append(recurring)
      return 200, recurring
    return 404, {'code': 5, 'message': f'no route {method} {path}'}

  def _run(self, run_id: str) -> Dict[str, Any]:
    for run in self.runs:
      if run['run_id'] == run_id:
        return run
    raise _ApiError(404, f'Run {run_id} not found')

  def _experiment(self, experiment_id: str) -> Dict[str, Any]:
    for experiment in self.experiments:
      if experiment['experiment_id'] == experiment_id:
        return experiment
    return {}

  def _act(self, run: Dict[str, Any], action: str) -> Dict[str, Any]:
    """RetryRun and TerminateRun, as resource_manager.go does them."""
    if action == 'retry':
      if run['state'] != 'FAILED':
        raise _ApiError(500, f'Failed to retry run {run["run_id"]} as it '
                        'does not allow retries')
      run['state'] = 'RUNNING'
      run.pop('error', None)
      return {}
    if action == 'terminate':
      run_id = run['run_id']
      if run['state'] not in ('PENDING', 'RUNNING', 'PAUSED',
                              'RUNTIME_STATE_UNSPECIFIED'):
        # run_store.go: the UPDATE matched no row; an InvalidInputError.
        raise _ApiError(400, f'Failed to terminate run {run_id}: Invalid '
                        f'input error: Failed to terminate a run {run_id}. '
                        'Row not found')
      run['state'] = 'CANCELING'
      if run_id in self.lost_workflows:
        raise _ApiError(500, f'Failed to terminate run {run_id} due to error '
                        'terminating its workflow')
      return {}
    raise _ApiError(404, f'no action {action}')

  def _check_namespace(self, namespace: str) -> None:
    if self.namespace_required and not namespace:
      raise _ApiError(400, 'Invalid input error: Namespace is required for '
                      'pipeline operations')

  def _in_namespace(self, items: List[Dict[str, Any]],
                    query) -> List[Dict[str, Any]]:
    """In multi-user mode, the items of the query's namespace (shared ones
    without one); a single-user server ignores namespaces."""
    if not self.namespace_required:
      return items
    return [i for i in items
            if i.get('namespace', '') == query.get('namespace', '')]

  def _add_version(self, pipeline_id: str, name: str, package: bytes):
    version = {'pipeline_id': pipeline_id,
               'pipeline_version_id': self._new_id('version'),
               'display_name': name, 'package': package}
    self.versions[pipeline_id].append(version)
    return {k: v for k, v in version.items() if k != 'package'}

  def _check_reference(self, run: Dict[str, Any]) -> None:
    reference = run['pipeline_version_reference']
    ids = [v['pipeline_version_id']
           for v in self.versions.get(reference['pipeline_id'], [])]
    if reference['pipeline_version_id'] not in ids:
      raise SpecError(f'pipeline version {reference} not found')


class _ApiError(Exception):

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


def _listing(kind: str, items: List[Dict[str, Any]], query) -> Dict[str, Any]:
  """Items whose display_name equals the filter's, as KFP lists them."""
  names = [p['stringValue']
           for p in json.loads(query.get('filter', '{}')).get('predicates', [])
           if p['key'] == 'display_name']
  found = [i for i in items if not names or i['display_name'] in names]
  return {kind: found, 'total_size': len(found)} if found else {}


def _uploaded_file(body: bytes, content_type: str) -> bytes:
  """The `uploadfile` part of a multipart/form-data body."""
  message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
      f'Content-Type: {content_type}\r\n\r\n'.encode() + body)
  for part in message.iter_parts():
    if part.get_param('name', header='content-disposition') == 'uploadfile':
      return part.get_payload(decode=True)
  raise SpecError('no uploadfile in the request')


def _now_rfc3339() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime(
      '%Y-%m-%dT%H:%M:%S.%fZ')
