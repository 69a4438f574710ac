"""The packages that stand at the repository's top level, where TFX's
templates put them, and import as imgcls.<name> all the same.

The one list of them. setup.py installs each folder as imgcls.<name>
(package_dir); in a checkout, imgcls/__init__.py maps exactly these names to
their folders, so that nothing else of the checkout (tests/, bench/,
setup.py) becomes a part of imgcls.
"""
import importlib.abc
import importlib.util
import os
import sys

NAMES = ('pipeline', 'components', 'trainer')


class _CheckoutFinder(importlib.abc.MetaPathFinder):
  """Finds imgcls.<name> for the NAMES, in the checkout's top-level folders.
  Their submodules are found on the package's __path__ as usual."""

  def __init__(self, checkout: str):
    self.checkout = checkout

  def find_spec(self, fullname, path=None, target=None):
    parent, _, name = fullname.partition('.')
    if parent != 'imgcls' or name not in NAMES:
      return None
    folder = os.path.join(self.checkout, name)
    return importlib.util.spec_from_file_location(
        fullname, os.path.join(folder, '__init__.py'),
        submodule_search_locations=[folder])


def map_checkout_folders(package_dir: str) -> None:
  """In a checkout (imgcls/ beside setup.py), imports imgcls.<name> from
  the top-level folder <name>/. An installed imgcls has them inside it."""
  checkout = os.path.dirname(package_dir)
  if not os.path.isfile(os.path.join(checkout, 'setup.py')):
    return
  if not any(isinstance(finder, _CheckoutFinder) and
             finder.checkout == checkout for finder in sys.meta_path):
    # First: ahead of an editable install's finder, which maps the names to
    # whichever clone installed it.
    sys.meta_path.insert(0, _CheckoutFinder(checkout))
