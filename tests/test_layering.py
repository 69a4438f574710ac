"""Imports run one way, along the data's path, and no package cycle exists.

data dir -> ExampleGen -> Trainer -> model -> Evaluator -> Pusher -> serving
dir -> TF Serving. A package may import only packages of a lower layer; two
packages of one layer are independent of each other. Every import counts,
the lazy ones inside functions too, since they run all the same.
"""
import ast
import os
import sys

import pytest

from imgcls import top_level

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lowest first. README.md ("Where things happen") describes the same layers.
# Each is a part of the one import name, imgcls: imgcls.contract and so on.
LAYERS = (
    ('top_level',),  # where imgcls.pipeline and the like are found
    ('contract',),  # names, errors and the SavedModel contract
    ('imagedata', 'serving_dir'),  # reading image folders; version dirs
    ('trainer', 'components'),  # the model side; the pipeline's components
    ('pipeline',),  # the one pipeline definition and its runners
    ('clients',),  # clients of any TF Serving
    ('report', 'retrain'),  # what reads runs back, and what starts them
    ('dev_server',),  # the development stand-in for TF Serving
    ('cli', 'run', 'bench'),  # the console script; the benchmarks
)
_LAYER_OF = {package: i for i, layer in enumerate(LAYERS) for package in layer}


# The parts at the repository's top level: the packages that import as
# imgcls.<name> (imgcls/top_level.py), and bench/. Every other part lives in
# imgcls/.
_TOP_LEVEL = (*top_level.NAMES, 'bench')


def _source(part):
  """Where a part's code is: a package directory or a module file."""
  base = _REPO if part in _TOP_LEVEL else os.path.join(_REPO, 'imgcls')
  module = os.path.join(base, part + '.py')
  return module if os.path.isfile(module) else os.path.join(base, part)


def _python_files(part):
  source = _source(part)
  if source.endswith('.py'):
    yield source
    return
  for root, _, files in os.walk(source):
    for name in files:
      # Unit tests beside the code (TFX's *_test.py) use the test helpers.
      if name.endswith('.py') and not name.endswith('_test.py'):
        yield os.path.join(root, name)


def _imported_packages(path):
  """(line, part of imgcls) of every import of the project in the file."""
  with open(path, encoding='utf-8') as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      modules = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      modules = [node.module]
    else:
      continue
    for module in modules:
      names = module.split('.')
      if names[0] == 'imgcls' and len(names) > 1 and names[1] in _LAYER_OF:
        yield node.lineno, names[1]


def _violations(package):
  for path in _python_files(package):
    for line, imported in _imported_packages(path):
      if imported != package and _LAYER_OF[imported] >= _LAYER_OF[package]:
        yield f'{os.path.relpath(path, _REPO)}:{line} imports {imported}'


def test_every_part_of_the_project_has_a_layer():
  parts = {
      entry.name.removesuffix('.py')
      for entry in os.scandir(os.path.join(_REPO, 'imgcls'))
      if os.path.isfile(os.path.join(entry.path, '__init__.py')) or
      entry.name.endswith('.py') and entry.name != '__init__.py'
  }
  assert parts | set(_TOP_LEVEL) == set(_LAYER_OF)


@pytest.mark.parametrize('package', sorted(_LAYER_OF))
def test_imports_only_lower_layers(package):
  assert list(_violations(package)) == []


def test_layering_catches_an_upward_import(tmp_path, monkeypatch):
  """The check itself: an import from trainer/ into components/ is caught."""
  (tmp_path / 'trainer').mkdir()
  (tmp_path / 'trainer' / 'bad.py').write_text(
      'def f():\n  from imgcls.components import contract_check\n')
  monkeypatch.setattr(sys.modules[__name__], '_REPO', str(tmp_path))
  assert list(_violations('trainer')) == [
      'trainer/bad.py:2 imports components'
  ]
