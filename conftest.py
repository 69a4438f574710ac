"""What every test in the checkout shares: the one name of each test module
beside the code, and the fixtures that tests in several packages use.

pytest would import components/x_test.py as `components.x_test`, a second
name for the package that the code imports as `imgcls.components`; here such
a file is imported as `imgcls.components.x_test`, as imgcls/ files already
are (imgcls/top_level.py lists the top-level folders).
"""
import importlib
import pathlib

import pytest

from imgcls import top_level
from tests import served_models


class _BesideModule(pytest.Module):
  """A unit test in a top-level folder, imported under imgcls."""

  def _getobj(self):
    relative = self.path.relative_to(self.config.rootpath).with_suffix('')
    module = importlib.import_module('.'.join(('imgcls', *relative.parts)))
    if pathlib.Path(module.__file__) != self.path:
      raise self.CollectError(f'{self.path} imports as {module.__file__}')
    self.config.pluginmanager.consider_module(module)
    return module


def _in_top_level_folder(path: pathlib.Path, config) -> bool:
  if not path.is_relative_to(config.rootpath):
    return False
  parts = path.relative_to(config.rootpath).parts
  return bool(parts) and parts[0] in top_level.NAMES


def pytest_collect_directory(path, parent):
  """A plain directory: pytest's Package would import the folder's
  __init__.py by its folder name, looking for setup_module."""
  if _in_top_level_folder(path, parent.config):
    return pytest.Dir.from_parent(parent, path=path)
  return None


def pytest_pycollect_makemodule(module_path, parent):
  if _in_top_level_folder(module_path, parent.config):
    return _BesideModule.from_parent(parent, path=module_path)
  return None


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
  """A model base path holding version 1 of an (untrained) LenetModel."""
  saved = served_models.save_model(
      str(tmp_path_factory.mktemp('saved') / 'model'))
  base = str(tmp_path_factory.mktemp('serving') / served_models.MODEL_NAME)
  served_models.push_version(saved, base, 1)
  return base
