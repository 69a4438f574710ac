"""Bundled datasets written as class-folder PNGs, the layout users bring.

`digits` is scikit-learn's 8x8 digits set (1,797 images, shipped with the
package, so the demo and tests need no download). `mnist` converts the IDX
files of the full MNIST set (70,000 images) for benchmarks.
"""
import gzip
import io
import os
import struct
from typing import Iterable, Iterator, Optional, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from imgcls.contract.errors import UserError

MNIST_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
# Every fifth digits image goes to test: a fixed 80/20 split.
_DIGITS_TEST_EVERY = 5
_DIGITS_SIZE = 28  # upscaled from 8x8 to MNIST's size


def default_mnist_dir() -> str:
  """Where the repository's sibling `shared/` keeps MNIST, if it exists."""
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  repo = os.path.dirname(package)
  return os.path.join(os.path.dirname(repo), 'shared', 'data', 'mnist')


def digits_images() -> Iterator[Tuple[str, int, np.ndarray]]:
  """(split, label, 28x28 uint8 image) for scikit-learn's digits."""
  from sklearn import datasets
  digits = datasets.load_digits()
  for i, (image, label) in enumerate(zip(digits.images, digits.target)):
    pixels = Image.fromarray((image * (255 / 16)).astype(np.uint8))
    pixels = pixels.resize((_DIGITS_SIZE, _DIGITS_SIZE), Image.BILINEAR)
    split = 'test' if i % _DIGITS_TEST_EVERY == 0 else 'train'
    yield split, int(label), np.asarray(pixels)


def mnist_images(mnist_dir: str, limit: Optional[int] = None
                ) -> Iterator[Tuple[str, int, np.ndarray]]:
  """(split, label, image) from MNIST's IDX files; `limit` keeps the same
  share of each split (e.g. 7000 of 70000 -> 6000 train, 1000 test)."""
  total = 70_000
  for split, (images_file, labels_file) in MNIST_FILES.items():
    images = _read_idx(os.path.join(mnist_dir, images_file))
    labels = _read_idx(os.path.join(mnist_dir, labels_file))
    if images.shape[0] != labels.shape[0]:
      raise UserError(f'{mnist_dir}: {images_file} and {labels_file} hold '
                      'different numbers of items')
    count = images.shape[0] if limit is None else (
        images.shape[0] * limit // total)
    for image, label in zip(images[:count], labels[:count]):
      yield split, int(label), image


def _read_idx(path: str) -> np.ndarray:
  """The IDX format: magic (0, 0, dtype, ndim), ndim big-endian sizes, data."""
  try:
    with gzip.open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise UserError(f'{path}: not found (pass --mnist-dir, the folder of '
                    "MNIST's IDX .gz files)") from None
  except (OSError, EOFError) as e:
    raise UserError(f'{path}: not a readable gzip file: {e}') from None
  zero, dtype, ndim = struct.unpack('>HBB', data[:4])
  if zero != 0 or dtype != 0x08:
    raise UserError(f'{path}: not an IDX file of unsigned bytes')
  shape = struct.unpack(f'>{ndim}I', data[4:4 + 4 * ndim])
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_class_folders(samples: Iterator[Tuple[str, int, np.ndarray]],
                        out_dir: str, total: Optional[int] = None) -> int:
  """Writes each image as out_dir/<split>/<label>/<split>-<n>.png."""
  counts = {}

  def files():
    for split, label, image in samples:
      n = counts[split] = counts.get(split, 0) + 1
      yield os.path.join(split, str(label), f'{split}-{n:05d}.png'), png(image)

  return write_files(
      tqdm(files(), total=total, unit='img', desc='writing PNGs',
           mininterval=1, disable=total is None or total < 5000), out_dir)


def png(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='PNG')
  return buffer.getvalue()


def write_files(files: Iterable[Tuple[str, bytes]], root: str) -> int:
  """Writes each (path relative to root, contents), making its folders:
  the one writer of class folders, for sample data, benchmarks and tests."""
  count = 0
  for relative, data in files:
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(data)
    count += 1
  return count
