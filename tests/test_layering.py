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

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lowest first. README.md ("Where things happen") describes the same layers.
LAYERS = (
    ('contract',),  # names, errors and the SavedModel contract
    ('imagedata', 'serving_dir'),  # reading image folders; version dirs
    ('trainer', 'components'),  # the model side; the pipeline's components
    ('pipeline',),  # the one pipeline definition and its runners
    ('clients',),  # clients of any TF Serving
    ('report', 'retrain'),  # what reads runs back, and what starts them
    ('dev_server',),  # the development stand-in for TF Serving
    ('imgcls', 'bench'),  # the console script; the benchmarks
)
_LAYER_OF = {package: i for i, layer in enumerate(LAYERS) for package in layer}


def _python_files(package):
  for root, _, files in os.walk(os.path.join(_REPO, package)):
    for name in files:
      # Unit tests beside the code (TFX's *_test.py) use the test helpers.
      if name.endswith('.py') and not name.endswith('_test.py'):
        yield os.path.join(root, name)


def _imported_packages(path):
  """(line, project package) of every import in the file."""
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
      top = module.split('.')[0]
      if top in _LAYER_OF:
        yield node.lineno, top


def _violations(package):
  for path in _python_files(package):
    for line, imported in _imported_packages(path):
      if imported != package and _LAYER_OF[imported] >= _LAYER_OF[package]:
        yield f'{os.path.relpath(path, _REPO)}:{line} imports {imported}'


def test_every_package_of_the_project_has_a_layer():
  packages = {
      entry.name for entry in os.scandir(_REPO)
      if os.path.isfile(os.path.join(entry.path, '__init__.py')) and
      entry.name != 'tests'
  }
  assert packages == set(_LAYER_OF)


@pytest.mark.parametrize('package', sorted(_LAYER_OF))
def test_imports_only_lower_layers(package):
  assert list(_violations(package)) == []


def test_layering_catches_an_upward_import(tmp_path, monkeypatch):
  """The check itself: an import from trainer/ into components/ is caught."""
  (tmp_path / 'trainer').mkdir()
  (tmp_path / 'trainer' / 'bad.py').write_text(
      'def f():\n  from components import contract_check\n')
  monkeypatch.setattr(sys.modules[__name__], '_REPO', str(tmp_path))
  assert list(_violations('trainer')) == [
      'trainer/bad.py:2 imports components'
  ]
