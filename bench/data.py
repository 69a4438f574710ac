"""Benchmark datasets as class-folder PNGs, written once and reused.

Full runs use MNIST (`imgcls sample-data --source mnist --limit N` writes the
same trees); quick runs use the bundled digits, so they need no download.
"""
import itertools
import os
import shutil

from imagedata import sample_data

_COMPLETE = '.complete'  # written last: a half-written tree is redone
_DESCRIPTIONS = {'digits': 'scikit-learn digits', 'mnist': 'MNIST'}


def source(session) -> str:
  return 'digits' if session.quick else 'mnist'


def describe(session) -> str:
  """The source's name, for the doc."""
  return _DESCRIPTIONS[source(session)]


def dataset(session, size: int) -> str:
  """`size` images in `<root>/{train,test}/<class>/`: MNIST at full size
  (keeping MNIST's 6:1 split), the first `size` digits in quick runs."""
  root = os.path.join(session.work_dir, 'data', f'{source(session)}-{size}')
  if not os.path.exists(os.path.join(root, _COMPLETE)):
    if source(session) == 'mnist':
      samples = sample_data.mnist_images(session.mnist_dir, size)
    else:
      samples = itertools.islice(sample_data.digits_images(), size)
    shutil.rmtree(root, ignore_errors=True)
    sample_data.write_class_folders(samples, root, size)
    open(os.path.join(root, _COMPLETE), 'w').close()
  return root

