"""`imgcls rollback`: an earlier version republished as the newest, atomically,
and served by the local server without a failed request."""
import os

import pytest

from imgcls import cli
from imgcls.dev_server.server import ModelServer, ServerConfig
from imgcls.serving_dir import history, provenance, versions
from tests import served_models as testing

NAME = testing.MODEL_NAME


def _rollback(base, *extra):
  return cli.main(['rollback', '--model-base-path', base, *extra])


@pytest.fixture
def base(tmp_path):
  base = str(tmp_path / NAME)
  for n in range(1, 4):
    versions.publish(base, lambda d, n=n: _stand_in(d, f'model {n}'))
  return base


def _stand_in(tmp_dir, model_uri):
  os.makedirs(tmp_dir)
  with open(os.path.join(tmp_dir, 'saved_model.pb'), 'w') as f:
    f.write(model_uri)
  provenance.write_into(tmp_dir, provenance.Provenance(model_uri=model_uri))


def _content(base, version):
  with open(os.path.join(base, str(version), 'saved_model.pb')) as f:
    return f.read()


def test_by_default_the_version_before_the_newest_comes_back_as_a_new_one(
    base, capsys):
  assert _rollback(base) == 0
  assert 'version 4 republishes version 2' in capsys.readouterr().out
  assert versions.versions(base) == [1, 2, 3, 4]
  assert _content(base, 4) == 'model 2'
  rolled_back = provenance.of_version(os.path.join(base, '4'))
  assert (rolled_back.kind, rolled_back.rollback_of) == ('rollback', 2)
  assert rolled_back.model_uri == 'model 2'


def test_to_a_given_version(base):
  assert _rollback(base, '--to', '1') == 0
  assert _content(base, 4) == 'model 1'
  assert history.history(base)[0].state == history.SERVING


@pytest.mark.parametrize('to, message', [
    ('9', 'has no version 9; published: 1, 2, 3'),
    ('3', 'version 3 is already the newest'),
])
def test_a_version_that_is_not_there_or_already_serves_is_refused(
    base, capsys, to, message):
  assert _rollback(base, '--to', to) == 2
  err = capsys.readouterr().err
  assert message in err and 'Traceback' not in err
  assert versions.versions(base) == [1, 2, 3]


def test_a_pruned_version_is_refused_saying_so(base, capsys):
  versions.prune(base, keep=2)
  assert _rollback(base, '--to', '1') == 2
  err = capsys.readouterr().err
  assert 'version 1 was pruned' in err and 'published: 2, 3' in err
  assert versions.versions(base) == [2, 3]


def test_nothing_to_roll_back_to(tmp_path, capsys):
  base = str(tmp_path / NAME)
  versions.publish(base, lambda d: _stand_in(d, 'model 1'))
  assert _rollback(base) == 2
  assert 'no earlier version to roll back to' in capsys.readouterr().err


@pytest.mark.parametrize('make', [
    os.makedirs,  # an empty folder
    lambda path: os.makedirs(os.path.join(path, 'variables')),
])
def test_a_version_with_no_saved_model_is_refused_naming_it(base, capsys, make):
  make(os.path.join(base, '7'))
  versions.publish(base, lambda d: _stand_in(d, 'model 8'))
  assert _rollback(base, '--to', '7') == 2
  err = capsys.readouterr().err
  assert (f'version 7 of {base} cannot be served again, nothing was '
          f'published: {os.path.join(base, "7")} is not a SavedModel '
          'directory: no saved_model.pb in it') in err
  assert 'Traceback' not in err
  assert versions.versions(base) == [1, 2, 3, 7, 8]


def test_a_link_to_itself_among_the_versions_blocks_no_rollback(base, capsys):
  os.symlink('10', os.path.join(base, '10'))  # ln -s 10 10
  assert _rollback(base) == 0
  captured = capsys.readouterr()
  assert 'version 4 republishes version 2' in captured.out
  assert f'{base}/10: skipped, not a version' in captured.err
  assert _content(base, 4) == 'model 2'


def test_the_local_server_serves_the_rollback_without_a_failed_request(
    tmp_path):
  saved = testing.save_model(str(tmp_path / 'model'))
  base = str(tmp_path / NAME)
  testing.push_version(saved, base, 1)
  testing.push_version(saved, base, 2)
  config = ServerConfig(base, NAME, rest_port=0, grpc_port=0,
                        poll_seconds=0.05)
  with ModelServer(config) as server, testing.Load(server) as loop:
    assert testing.wait_for(lambda: 2 in loop.versions_seen)
    assert _rollback(base) == 0
    assert testing.wait_for(lambda: loop.versions_seen[-30:] == [3] * 30, 60)
  assert loop.failures == []
  assert set(loop.versions_seen[loop.versions_seen.index(3):]) == {3}
