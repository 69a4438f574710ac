"""Packaging for imgcls: image classifiers trained and shipped by a TFX
pipeline.

Dependencies are read from requirements.txt, the one file that pins them; the
lines after its "Test tools" comment form the [dev] extra.
"""
import pathlib
import runpy

import setuptools
from setuptools.command.build_py import build_py

_HERE = pathlib.Path(__file__).parent


def _requirements():
  """Splits requirements.txt into (install_requires, dev extra). Its pip pin
  is the installer the environments use, not something imgcls imports."""
  runtime, dev = [], []
  current = runtime
  for line in (_HERE / 'requirements.txt').read_text().splitlines():
    line = line.strip()
    if line.startswith('# Test tools'):
      current = dev
    elif line and not line.startswith(('#', 'pip==')):
      current.append(line)
  return runtime, dev


_RUNTIME, _DEV = _requirements()
# The top-level folders installed as imgcls.<name>, from their one list; run
# as a file, so that building imports nothing of imgcls.
_TOP_LEVEL = runpy.run_path(str(_HERE / 'imgcls' / 'top_level.py'))['NAMES']


def _packages_under(directory, prefix):
  """`prefix` and its subpackages, found in `directory`."""
  found = setuptools.find_packages(where=directory)
  return [prefix, *(f'{prefix}.{name}' for name in found)]


class _BuildPyWithoutTests(build_py):
  """Leaves out the unit tests beside the code (*_test.py): they import the
  checkout's tests/ helpers, which the wheel does not ship."""

  def find_package_modules(self, package, package_dir):
    return [(pkg, module, path) for pkg, module, path
            in super().find_package_modules(package, package_dir)
            if not module.endswith('_test')]


setuptools.setup(
    name='imgcls',
    version='0.1.0',
    description='Object-oriented TensorFlow image classifiers, trained and '
    'shipped by a TFX pipeline and served by TF Serving.',
    python_requires='>=3.10',
    # One import name, imgcls. The supporting packages live under imgcls/;
    # the top-level folders install under imgcls (imgcls/top_level.py maps
    # them to the same names in a checkout). The deployment's params file
    # ships as package data of imgcls.params (imgcls/contract/deployment.py
    # reads it).
    packages=[*_packages_under('imgcls', 'imgcls'),
              *(name for top in _TOP_LEVEL
                for name in _packages_under(top, f'imgcls.{top}')),
              'imgcls.params'],
    package_dir={**{f'imgcls.{top}': top for top in _TOP_LEVEL},
                 'imgcls.params': 'kubernetes/params'},
    package_data={'imgcls.params': ['params.env']},
    install_requires=_RUNTIME,
    extras_require={'dev': _DEV},
    cmdclass={'build_py': _BuildPyWithoutTests},
    entry_points={'console_scripts': ['imgcls = imgcls.cli:entry_point']},
)
