"""Benchmark datasets as class folders, written once and reused.

Full runs use MNIST (`imgcls sample-data --source mnist --limit N` writes the
same trees); quick runs use the bundled digits, so they need no download.
`photos` makes the same digits into what users bring: 640x480 colour JPEGs
of a few hundred KB.
"""
import io
import itertools
import os
import shutil

import numpy as np
from PIL import Image

from imgcls.imagedata import sample_data

_COMPLETE = '.complete'  # written last: a half-written tree is redone
_DESCRIPTIONS = {'digits': 'scikit-learn digits', 'mnist': 'MNIST'}


def source(session) -> str:
  return 'digits' if session.quick else 'mnist'


def describe(session) -> str:
  """The source's name, for the doc."""
  return _DESCRIPTIONS[source(session)]


PHOTO_SIZE = (640, 480)  # width, height
_PHOTO_QUALITY = 90
_PHOTO_NOISE = 12  # standard deviation, in 0..255 steps: a camera's grain


def dataset(session, size: int) -> str:
  """`size` images in `<root>/{train,test}/<class>/`: MNIST at full size
  (keeping MNIST's 6:1 split), the first `size` digits in quick runs."""
  root = os.path.join(session.work_dir, 'data', f'{source(session)}-{size}')
  if not os.path.exists(os.path.join(root, _COMPLETE)):
    shutil.rmtree(root, ignore_errors=True)
    sample_data.write_class_folders(_samples(session, size), root, size)
    open(os.path.join(root, _COMPLETE), 'w').close()
  return root


def photos(session, size: int) -> str:
  """`size` photo-like JPEGs in `<root>/{train,test}/<class>/`: the same
  digits as `dataset`, scaled up to 640x480, tinted, on a gradient, with
  noise, so that checking one costs what checking a photo costs."""
  root = os.path.join(session.work_dir, 'data',
                      f'{source(session)}-photos-{size}')
  if not os.path.exists(os.path.join(root, _COMPLETE)):
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    counts = {}

    def files():
      for split, label, digit in _samples(session, size):
        n = counts[split] = counts.get(split, 0) + 1
        yield (os.path.join(split, str(label), f'{split}-{n:05d}.jpg'),
               _photo(digit, rng))

    sample_data.write_files(files(), root)
    open(os.path.join(root, _COMPLETE), 'w').close()
  return root


def _samples(session, size: int):
  if source(session) == 'mnist':
    return sample_data.mnist_images(session.mnist_dir, size)
  return itertools.islice(sample_data.digits_images(), size)


def _photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
  """A grayscale digit as a 640x480 colour JPEG."""
  width, height = PHOTO_SIZE
  shape = np.asarray(Image.fromarray(digit).resize(PHOTO_SIZE,
                                                   Image.BILINEAR), np.float32)
  tint = rng.uniform(0.4, 1.0, 3)
  background = np.linspace(rng.uniform(0, 80), rng.uniform(0, 80), width)
  pixels = (shape[..., None] * tint + background[None, :, None] +
            rng.normal(0, _PHOTO_NOISE, (height, width, 3)))
  buffer = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
      buffer, 'JPEG', quality=_PHOTO_QUALITY)
  return buffer.getvalue()

