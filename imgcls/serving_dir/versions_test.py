"""What counts as a version, and what publish accepts as one (issue 36)."""
import logging
import os

import pytest

from imgcls.contract import progress
from imgcls.contract.errors import UserError
from imgcls.serving_dir import versions


def _model(tmp_dir):
  os.makedirs(tmp_dir)
  open(os.path.join(tmp_dir, 'saved_model.pb'), 'w').close()


def test_a_link_to_itself_named_as_a_version_is_skipped_and_said_once(
    tmp_path, caplog):
  base = str(tmp_path / 'M')
  versions.publish(base, _model)
  os.symlink('10', os.path.join(base, '10'))  # ln -s 10 10
  os.symlink('loop', os.path.join(base, 'loop'))
  with caplog.at_level(logging.WARNING, progress.LOGGER_NAME):
    assert versions.versions(base) == [1]
    assert versions.versions(base) == [1]  # a server polls every second
  (said,) = [r.getMessage() for r in caplog.records]
  assert said == (f'{base}/10: skipped, not a version: Too many levels of '
                  'symbolic links')
  assert versions.latest_version_dir(base) == os.path.join(base, '1')


@pytest.mark.parametrize('write', [
    os.makedirs,  # an empty folder
    lambda d: os.makedirs(os.path.join(d, 'variables')),  # variables only
])
def test_publish_refuses_what_holds_no_saved_model_and_leaves_nothing(
    tmp_path, write):
  base = str(tmp_path / 'M')
  with pytest.raises(UserError, match=f'nothing published under {base}: what '
                     'was written is not a SavedModel directory'):
    versions.publish(base, write)
  assert os.listdir(base) == []


@pytest.mark.parametrize('make, problem', [
    (lambda p: None, 'no such directory'),
    (os.makedirs, 'no saved_model.pb in it'),
    (lambda p: open(p, 'w').close(), 'a file (name the directory that holds '
     'saved_model.pb)'),
])
def test_what_is_not_a_saved_model_is_named(tmp_path, make, problem):
  path = str(tmp_path / 'x')
  make(path)
  assert versions.saved_model_problem(path) == (
      f'not a SavedModel directory: {problem}')
  with pytest.raises(UserError, match=f'^{path}: not a SavedModel'):
    versions.check_saved_model(path)


def test_a_saved_model_in_text_form_is_one(tmp_path):
  (tmp_path / 'saved_model.pbtxt').write_text('')
  assert versions.check_saved_model(str(tmp_path)) == str(tmp_path)
