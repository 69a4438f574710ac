"""One test layout: pytest finds every test file, wherever it sits.

Unit tests beside their code are `*_test.py`, as TFX has them; the suite in
tests/ is `test_*.py`. pytest.ini names no testpaths (a list that a new
package's tests would be missing from) and skips only what is not code.
"""
import configparser
import fnmatch
import os
import re

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


def test_the_readme_is_short_and_leads_with_the_main_job():
  with open(os.path.join(_REPO, 'README.md'), encoding='utf-8') as f:
    lines = f.read().splitlines()
  assert len(lines) <= 200
  assert any('imgcls run --data-root' in line for line in lines[:60])


def test_every_relative_link_of_the_readme_and_docs_exists():
  pages = ['README.md'] + [os.path.join('docs', name)
                           for name in os.listdir(os.path.join(_REPO, 'docs'))
                           if name.endswith('.md')]
  for page in pages:
    with open(os.path.join(_REPO, page), encoding='utf-8') as f:
      text = f.read()
    for target in re.findall(r'\]\(([^)#:]+)(?:#[^)]*)?\)', text):
      path = os.path.join(_REPO, os.path.dirname(page), target)
      assert os.path.exists(path), f'{page}: {target}'
