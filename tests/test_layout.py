"""The checkout's layout: one import name, and one place for each test.

`imgcls.pipeline`, `imgcls.components` and `imgcls.trainer` are the
top-level folders, and nothing else of the checkout is part of imgcls.
Unit tests of one module are `<module>_test.py` beside it, as TFX has them;
tests/ holds the `test_*.py` that span packages. pytest.ini names no
testpaths (a list that a new package's tests would be missing from) and
skips only what is not code.
"""
import configparser
import fnmatch
import importlib.util
import os
import re
import subprocess
import sys
import textwrap

import pytest

from imgcls import top_level

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pytest_ini() -> configparser.SectionProxy:
  parser = configparser.ConfigParser(interpolation=None)
  parser.read(os.path.join(_REPO, 'pytest.ini'))
  return parser['pytest']


def _test_files():
  skipped = _pytest_ini()['norecursedirs'].split()
  for root, dirs, files in os.walk(_REPO):
    dirs[:] = [d for d in dirs
               if not any(fnmatch.fnmatch(d, p) for p in skipped)]
    for name in files:
      if fnmatch.fnmatch(name, 'test_*.py') or fnmatch.fnmatch(name,
                                                             '*_test.py'):
        yield os.path.relpath(os.path.join(root, name), _REPO)


@pytest.mark.parametrize('name', top_level.NAMES)
def test_the_top_level_folders_import_under_imgcls(name):
  spec = importlib.util.find_spec(f'imgcls.{name}')
  assert spec.submodule_search_locations == [os.path.join(_REPO, name)]


@pytest.mark.parametrize('name', ['tests', 'bench', 'setup', 'imgcls',
                                  'scripts', 'kubernetes'])
def test_nothing_else_of_the_checkout_is_part_of_imgcls(name):
  assert importlib.util.find_spec(f'imgcls.{name}') is None


def test_a_unit_test_beside_the_code_has_the_one_name(tmp_path):
  """pytest imports components/x_test.py as imgcls.components.x_test
  (conftest.py), and never imports the folder by its bare name. The probe
  runs in a copy of the checkout's layout, not among the real tests."""
  for name in ('imgcls', 'tests', 'trainer', 'pipeline'):
    (tmp_path / name).symlink_to(os.path.join(_REPO, name))
  for name in ('conftest.py', 'pytest.ini', 'setup.py',
               'components/__init__.py'):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(open(os.path.join(_REPO, name), 'rb').read())
  (tmp_path / 'components' / 'probe_test.py').write_text(textwrap.dedent('''
      import sys
      def test_name():
        assert __name__ == 'imgcls.components.probe_test'
        assert 'components' not in sys.modules
      '''))
  done = subprocess.run(
      [sys.executable, '-m', 'pytest', '-q', 'components/probe_test.py'],
      cwd=tmp_path, env={**os.environ, 'PYTHONPATH': str(tmp_path)},
      capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stdout[-3000:]


def test_no_testpaths_limit_where_tests_are_found():
  assert 'testpaths' not in _pytest_ini()
  assert _pytest_ini()['python_files'].split() == ['test_*.py', '*_test.py']


def test_test_files_sit_where_the_collection_reaches():
  found = set(_test_files())
  assert 'tests/test_layout.py' in found
  assert 'components/versioned_pusher_test.py' in found
  # A unit test beside the code of any package would be found the same way.
  for path in found:
    assert path.startswith('tests/') or path.endswith('_test.py'), (
        f'{path}: beside the code a test is <module>_test.py')


def test_a_unit_test_sits_beside_the_module_it_tests():
  for path in _test_files():
    if path.endswith('_test.py'):
      module = path.removesuffix('_test.py') + '.py'
      assert os.path.isfile(os.path.join(_REPO, module)), (
          f'{path}: a unit test is named after its module; what spans '
          f'modules goes to tests/test_<topic>.py')


def test_the_readme_is_short_and_leads_with_the_main_job():
  with open(os.path.join(_REPO, 'README.md'), encoding='utf-8') as f:
    lines = f.read().splitlines()
  assert len(lines) <= 200
  assert any('imgcls run --data-root' in line for line in lines[:60])


def _read(path: str) -> str:
  with open(path, encoding='utf-8') as f:
    return f.read()


def _anchors(markdown: str):
  """The anchors GitHub gives the headings of a page (outside code blocks):
  lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
  anchors, fenced = set(), False
  for line in markdown.splitlines():
    fenced ^= line.startswith('```')
    heading = re.match(r'#+ (.*)', line)
    if heading and not fenced:
      anchor = re.sub(r'[^\w\- ]', '', heading.group(1).strip().lower())
      anchor = anchor.replace(' ', '-')
      repeat = anchor
      for n in range(1, 100):
        if repeat not in anchors:
          break
        repeat = f'{anchor}-{n}'
      anchors.add(repeat)
  return anchors


def test_every_relative_link_of_the_readme_and_docs_exists():
  """Every relative link names a file that exists, and a heading of it."""
  pages = ['README.md', 'kubernetes/README.md'] + [
      os.path.join('docs', name)
      for name in os.listdir(os.path.join(_REPO, 'docs'))
      if name.endswith('.md')]
  for page in pages:
    text = _read(os.path.join(_REPO, page))
    for target, anchor in re.findall(r'\]\(([^):#]*)(?:#([^)]*))?\)', text):
      path = (os.path.join(_REPO, os.path.dirname(page), target) if target
              else os.path.join(_REPO, page))
      assert os.path.exists(path), f'{page}: {target}'
      if anchor:
        assert anchor in _anchors(_read(path)), f'{page}: {target}#{anchor}'
