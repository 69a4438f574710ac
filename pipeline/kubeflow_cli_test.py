"""`imgcls compile --output` on a path it cannot write (issue 36): refused
before the compile, saying what is wrong, and nothing is left behind."""
import os

import pytest

from imgcls import cli


def _compile(output, capsys):
  code = cli.main(['compile', '--output', str(output)])
  return code, capsys.readouterr().err


def test_a_directory_named_like_the_package_is_refused(tmp_path, capsys):
  output = tmp_path / 'x.yaml'
  output.mkdir()
  assert _compile(output, capsys) == (
      2, f'imgcls compile: error: --output {output}: is a directory; name a '
      'file\n')
  assert os.listdir(output) == []


@pytest.mark.parametrize('below', ['p.yaml', 'more/p.yaml'])
def test_a_parent_that_is_a_file_is_named_as_one(tmp_path, capsys, below):
  parent = tmp_path / 'afile'
  parent.write_text('kept')
  assert _compile(parent / below, capsys) == (
      2, f'imgcls compile: error: --output {parent / below}: {parent} is a '
      'file, not a folder\n')
  assert parent.read_text() == 'kept'


def test_a_place_where_no_file_can_be_made_is_refused(capsys):
  # /proc takes no new files, whoever runs the test (root too).
  code, err = _compile('/proc/imgcls/p.yaml', capsys)
  assert code == 2
  assert err.startswith('imgcls compile: error: --output /proc/imgcls/p.yaml: '
                        'cannot create a file in /proc: ')
  assert 'Traceback' not in err
