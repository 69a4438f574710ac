"""`imgcls run --verify-serving`, with real TFX runs and local servers.

One data root, in order: a push a healthy server serves (exit 0); new data
whose push a server never loads (rolled back, exit non-zero); a re-run, which
is gated against the rolled-back model because it is the served one.
"""
import os

import pytest

from imgcls import cli
from imgcls.dev_server.server import ModelServer, ServerConfig
from imgcls.pipeline import results
from imgcls.serving_dir import provenance, versions
from tests import images

pytestmark = pytest.mark.e2e

CLASSES = {'a': 20, 'b': 20}
NAME = 'LenetModel'


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp('verify')
  images.write_class_folders(str(root / 'data' / 'train'), CLASSES)
  images.write_class_folders(str(root / 'data' / 'test'),
                             {k: 5 for k in CLASSES}, seed=1)
  return root


def _server(base):
  return ModelServer(ServerConfig(base, NAME, rest_port=0, grpc_port=0,
                                  poll_seconds=0.1))


def _run(root, *extra):
  return cli.main([
      'run', '--data-root', str(root / 'data'), '--serving-dir',
      str(root / 'serving'), '--pipeline-root', str(root / 'pipeline'),
      '--epochs', '1', '--batch-size', '16', '--min-accuracy', '0',
      '--max-accuracy-drop', '1', '--accept-anomalies', *extra])


def _verify_flags(server, timeout_s):
  return ('--verify-serving', '127.0.0.1', '--rest-port',
          str(server.rest_port), '--grpc-port', str(server.grpc_port),
          '--verify-timeout', str(timeout_s))


def _base(root):
  return str(root / 'serving' / NAME)


def test_a_healthy_server_verifies_the_push_and_the_run_exits_0(root, capsys):
  with _server(_base(root)) as server:
    assert _run(root, *_verify_flags(server, 60)) == 0
  assert 'serving verified: version 1' in capsys.readouterr().out
  assert versions.versions(_base(root)) == [1]


def test_a_server_that_never_loads_the_push_gets_it_rolled_back(
    root, tmp_path, capsys):
  images.write_class_folders(str(root / 'data' / 'train'), {'a': 3, 'b': 3},
                             seed=5)  # new files: a new model
  elsewhere = tmp_path / NAME
  os.makedirs(elsewhere)
  os.symlink(os.path.join(_base(root), '1'), elsewhere / '1')
  with _server(str(elsewhere)) as server:  # never sees version 2
    assert _run(root, *_verify_flags(server, 3)) == 1
  out = capsys.readouterr().out
  assert 'serving verification FAILED for version 2' in out
  assert 'not AVAILABLE' in out
  assert 'rolled back: version 3' in out
  assert versions.versions(_base(root)) == [1, 2, 3]
  assert provenance.of_version(os.path.join(_base(root), '3')).rollback_of == 1


def test_the_next_run_is_gated_against_the_rolled_back_model(root):
  assert _run(root) == 0
  result = results.load_run(str(root / 'pipeline'))
  assert result.baseline_version == 3
  assert result.already_published == '2'  # the failed push is not retried
