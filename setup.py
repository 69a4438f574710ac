"""Packaging for imgcls: image classifiers trained and shipped by a TFX pipeline.

Dependencies are read from requirements.txt, the one file that pins them; the
lines after its "Test tools" comment form the [dev] extra.
"""
import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent


def _requirements():
  """Splits requirements.txt into (install_requires, dev extra)."""
  runtime, dev, current = [], [], None
  current = runtime
  for line in (_HERE / 'requirements.txt').read_text().splitlines():
    line = line.strip()
    if line.startswith('# Test tools'):
      current = dev
    elif line and not line.startswith('#'):
      current.append(line)
  return runtime, dev


_RUNTIME, _DEV = _requirements()

setuptools.setup(
    name='imgcls',
    version='0.1.0',
    description='Object-oriented TensorFlow image classifiers, trained and '
    'shipped by a TFX pipeline and served by TF Serving.',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=[
        'trainer', 'trainer.*', 'components', 'components.*', 'pipeline',
        'pipeline.*', 'clients', 'clients.*', 'dev_server', 'dev_server.*',
        'contract', 'contract.*', 'imagedata', 'imagedata.*', 'serving_dir',
        'serving_dir.*', 'retrain', 'retrain.*',
        'report', 'report.*', 'imgcls', 'imgcls.*'
    ]),
    # The deployment's shared names (contract/deployment.py reads them).
    data_files=[('share/imgcls', ['kubernetes/params/params.env'])],
    install_requires=_RUNTIME,
    extras_require={'dev': _DEV},
    entry_points={'console_scripts': ['imgcls = imgcls.cli:main']},
)
