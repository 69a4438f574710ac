"""The KFP client on multi-user Kubeflow: credentials, host and namespace.

Against the KFP API stand-in (tests/kfp_fake_server.py), which authenticates
as KFP 2.16.1's multi-user API server does: a bearer token in the
Authorization header, or Unauthenticated.

- A token file is read through kfp's own ServiceAccountTokenVolumeCredentials
  (sdk/python/kfp/client/set_volume_credentials.py), whose hook kfp_server_api
  calls before every request (Configuration.get_api_key_with_prefix): a file
  the kubelet renews is sent as it reads at that moment.
- The user's namespace is never kfp.Client's `namespace`, which names where
  ml-pipeline runs (kfp's client.py, _load_config).
"""

import pytest
import yaml

from imgcls import cli
from imgcls.contract.errors import UserError
from imgcls.pipeline import kubeflow
from tests import kfp_fake_server

# The smallest package KFP's upload checks accept (v2_template.go): a named
# PipelineSpec of schema 2.1.0 with a root.
_PACKAGE = {'pipelineInfo': {'name': 'imgcls'}, 'schemaVersion': '2.1.0',
            'sdkVersion': 'kfp-2.16.1', 'root': {'dag': {'tasks': {}}}}


@pytest.fixture(autouse=True)
def outside_a_cluster(monkeypatch, tmp_path):
  """No in-cluster service account, no KFP token convention, and kfp's own
  settings under a home of the test's."""
  for name in ('KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT',
               kubeflow.TOKEN_PATH_ENV, 'KF_PIPELINES_ENDPOINT', 'KUBECONFIG'):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))


@pytest.fixture
def package(tmp_path):
  path = tmp_path / 'pipeline.yaml'
  path.write_text(yaml.safe_dump(_PACKAGE))
  return str(path)


@pytest.fixture
def server():
  fake = kfp_fake_server.FakeKfp(token='token-1', namespace_required=True)
  yield fake
  fake.stop()


def test_every_request_carries_the_token_files_content_of_the_moment(
    server, tmp_path):
  token_file = tmp_path / 'token'
  token_file.write_text('token-1\n')
  api = kubeflow.KfpApi(server.host, namespace='team-a',
                        token_file=str(token_file))
  assert api.runs('imgcls') == []
  assert set(server.authorizations) == {'Bearer token-1'}
  # The kubelet renews the file; the API server no longer takes the old one.
  token_file.write_text('token-2\n')
  server.token = 'token-2'
  seen = len(server.authorizations)
  assert api.runs('imgcls') == []  # the same client
  assert server.authorizations[seen:] == ['Bearer token-2']


def test_the_token_file_follows_kfps_convention(server, tmp_path, monkeypatch,
                                                package):
  token_file = tmp_path / 'token'
  token_file.write_text('token-1')
  monkeypatch.setenv(kubeflow.TOKEN_PATH_ENV, str(token_file))
  assert cli.main(['submit', '--host', server.host, '--package', package,
                   '--namespace', 'team-a']) == 0
  assert set(server.authorizations) == {'Bearer token-1'}
  (run,) = server.runs
  assert run['namespace'] == 'team-a'


def test_a_literal_token_and_a_file_are_not_both_taken(tmp_path):
  with pytest.raises(UserError, match='not both'):
    kubeflow.KfpApi('http://kfp', token='t', token_file=str(tmp_path / 'x'))


def test_an_unreadable_token_file_is_named(tmp_path, capsys, package):
  assert cli.main(['submit', '--host', 'http://127.0.0.1:9', '--package',
                   package, '--token-file', str(tmp_path / 'missing')]) == 2
  err = capsys.readouterr().err
  assert str(tmp_path / 'missing') in err and 'pipelines.kubeflow.org' in err


def test_a_token_without_a_host_needs_one_outside_a_cluster(capsys, package):
  """kfp.Client would send it to its default, http://localhost."""
  assert cli.main(['submit', '--package', package, '--token', 't']) == 2
  assert 'needs --host' in capsys.readouterr().err


def test_a_token_without_a_host_goes_to_kfps_in_cluster_address(monkeypatch):
  monkeypatch.setenv('KUBERNETES_SERVICE_HOST', '10.0.0.1')
  api = kubeflow.KfpApi(None, token='t', namespace='team-a')
  assert api.host == ('http://ml-pipeline.kubeflow.svc.cluster.local:8888')
  assert api.namespace == 'team-a'


def _kube_context(tmp_path, monkeypatch, server) -> None:
  """A kubeconfig whose one context is the stand-in's API server."""
  kubeconfig = tmp_path / 'kubeconfig'
  kubeconfig.write_text(yaml.safe_dump({
      'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'test',
      'clusters': [{'name': 'test', 'cluster': {'server': server.host}}],
      'users': [{'name': 'test', 'user': {'token': 'kube-token'}}],
      'contexts': [{'name': 'test',
                    'context': {'cluster': 'test', 'user': 'test'}}]}))
  # kubernetes reads $KUBECONFIG once, at import (kube_config.py).
  from kubernetes.config import kube_config
  monkeypatch.setattr(kube_config, 'KUBE_CONFIG_DEFAULT_LOCATION',
                      str(kubeconfig))


def test_a_kube_context_cannot_reach_multi_user_kfp_and_says_so(
    tmp_path, monkeypatch, package, server, capsys):
  """The API server's proxy drops the Authorization header, so multi-user
  KFP sees no caller: the message says a kube context is for single-user
  KFP and names the way that works, not the context."""
  _kube_context(tmp_path, monkeypatch, server)
  assert cli.main(['submit', '--package', package,
                   '--namespace', 'team-a']) == 2
  assert set(server.authorizations) == {None}
  err = capsys.readouterr().err
  assert 'through the kube context refused the request (HTTP 401)' in err
  assert 'single-user KFP only' in err and 'pass --host' in err
  assert 'kube context that may reach it' not in err
  assert not server.pipelines


def test_submit_into_a_namespace_never_calls_ml_pipeline_there(
    tmp_path, monkeypatch, package):
  """Without --host, kfp.Client goes through the kube API server's service
  proxy to ml-pipeline in the namespace it is given (client.py,
  _load_config): that must be KFP's own, whatever the user's namespace. The
  kube context's user
  has a token, whose refresh hook would drop the proxy path
  (kubernetes kube_config.py, _set_config) if imgcls did not keep it."""
  server = kfp_fake_server.FakeKfp(namespace_required=True)
  _kube_context(tmp_path, monkeypatch, server)
  try:
    assert cli.main(['submit', '--package', package,
                     '--namespace', 'team-a']) == 0
    assert server.proxied_to and set(server.proxied_to) == {'kubeflow'}
    (pipeline,) = server.pipelines
    (run,) = server.runs
    assert pipeline['namespace'] == run['namespace'] == 'team-a'
  finally:
    server.stop()
