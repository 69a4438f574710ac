"""Packaging for imgcls: image classifiers trained and shipped by a TFX pipeline.

Dependencies are read from requirements.txt, the one file that pins them; the
lines after its "Test tools" comment form the [dev] extra.
"""
import pathlib

import setuptools

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
# Installed as imgcls.pipeline, imgcls.components and imgcls.trainer.
_TOP_LEVEL = ('pipeline', 'components', 'trainer')


def _packages_under(directory, prefix):
  """`prefix` and its subpackages, found in `directory`."""
  found = setuptools.find_packages(where=directory)
  return [prefix, *(f'{prefix}.{name}' for name in found)]


setuptools.setup(
    name='imgcls',
    version='0.1.0',
    description='Object-oriented TensorFlow image classifiers, trained and '
    'shipped by a TFX pipeline and served by TF Serving.',
    python_requires='>=3.10',
    # One import name, imgcls. The supporting packages live under imgcls/;
    # pipeline/, components/ and trainer/ stay at the repository's top level
    # and install under imgcls. (imgcls/__init__.py gives them the same names
    # in a checkout). The deployment's params file ships as package data of
    # imgcls.params (imgcls/contract/deployment.py reads it).
    packages=[*_packages_under('imgcls', 'imgcls'),
              *(name for top in _TOP_LEVEL
                for name in _packages_under(top, f'imgcls.{top}')),
              'imgcls.params'],
    package_dir={**{f'imgcls.{top}': top for top in _TOP_LEVEL},
                 'imgcls.params': 'kubernetes/params'},
    package_data={'imgcls.params': ['params.env']},
    install_requires=_RUNTIME,
    extras_require={'dev': _DEV},
    entry_points={'console_scripts': ['imgcls = imgcls.cli:entry_point']},
)
