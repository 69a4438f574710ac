"""Reading the class-folder layout: `<split_dir>/<class name>/<image files>`.

The sorted class folder names are the label vocabulary. Every problem a user
can make with such a tree stops with an error that names the path at fault;
unreadable files are skipped and listed instead, because one bad file in a
large dataset should not stop a run.
"""
import dataclasses
import io
import logging
import os
import struct
import zlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from contract.errors import UserError

# What TensorFlow's decode_image reads, and so what the model can serve.
IMAGE_FORMATS = frozenset({'PNG', 'JPEG', 'BMP', 'GIF'})
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


@dataclasses.dataclass(frozen=True)
class LabeledFile:
  path: str
  label: int
  class_name: str


@dataclasses.dataclass
class SplitListing:
  """The readable images of one split, and what was skipped, with why."""
  split_dir: str
  class_names: List[str]
  files: List[LabeledFile]
  skipped: List[Tuple[str, str]]  # (path, reason)

  def count_by_class(self) -> Dict[str, int]:
    counts = dict.fromkeys(self.class_names, 0)
    for f in self.files:
      counts[f.class_name] += 1
    return counts


def decode_rgb(encoded: bytes) -> np.ndarray:
  """(height, width, 3) uint8 pixels of any mode (GIF: its first frame), as a
  client would decode them before sending pixels to serving_default."""
  with Image.open(io.BytesIO(encoded)) as image:
    return np.asarray(image.convert('RGB'))


def pixel_size(encoded: bytes) -> Tuple[int, int]:
  """(width, height), from the header only."""
  with Image.open(io.BytesIO(encoded)) as image:
    return image.size


def image_problem(data: bytes) -> Optional[str]:
  """Why `data` is not a usable PNG/JPEG/BMP/GIF image, or None if it is.

  A truncated or damaged file can have a valid header, so the whole file is
  checked: PNG chunk by chunk against its CRCs (the common case, and ten
  times cheaper than opening it with PIL), other formats by decoding them.
  """
  if data.startswith(_PNG_SIGNATURE):
    return _png_problem(memoryview(data))
  try:
    with Image.open(io.BytesIO(data)) as image:
      if image.format not in IMAGE_FORMATS:
        return f'unsupported format {image.format} (use PNG, JPEG, BMP or GIF)'
      image.load()
  except Exception as e:  # pylint: disable=broad-except  (PIL raises many)
    return f'not a readable image: {e}'
  return None


def _png_problem(data: memoryview) -> Optional[str]:
  """Walks the chunks (length, type, data, CRC) of a PNG up to IEND."""
  position = len(_PNG_SIGNATURE)
  while position + 12 <= len(data):
    length, kind = struct.unpack_from('>I4s', data, position)
    end = position + 12 + length
    if end > len(data):
      break
    if position == len(_PNG_SIGNATURE) and kind != b'IHDR':
      return 'not a readable image: PNG without IHDR'
    (crc,) = struct.unpack_from('>I', data, end - 4)
    if zlib.crc32(data[position + 4:end - 4]) != crc:
      return f'not a readable image: PNG chunk {kind.decode("latin-1")} is damaged'
    if kind == b'IEND':
      return None
    position = end
  return 'not a readable image: truncated PNG'


def class_names_of(split_dir: str) -> List[str]:
  """The sorted class folder names under `split_dir`."""
  if not os.path.isdir(split_dir):
    raise UserError(f'{split_dir}: no such directory (expected '
                    f'{split_dir}/<class name>/<images>)')
  names = sorted(e.name for e in os.scandir(split_dir)
                 if e.is_dir() and not e.name.startswith('.'))
  if not names:
    raise UserError(f'{split_dir}: no class folders (expected '
                    f'{split_dir}/<class name>/<images>)')
  return names


def files_of_class(split_dir: str, class_name: str) -> List[str]:
  """The visible regular files of one class folder, sorted, as paths."""
  class_dir = os.path.join(split_dir, class_name)
  return sorted(e.path for e in os.scandir(class_dir)
                if e.is_file() and not e.name.startswith('.'))


def read_split(split_dir: str,
               class_names: Optional[Sequence[str]] = None) -> SplitListing:
  """Lists and checks every image of a split.

  Args:
    split_dir: the directory holding one folder per class.
    class_names: the vocabulary to use (e.g. the training split's); the
      split's own folders must be exactly these.
  """
  found = class_names_of(split_dir)
  if class_names is not None and list(class_names) != found:
    raise UserError(
        f'{split_dir}: class folders {found} differ from the training '
        f'classes {list(class_names)}')
  files, skipped = [], []
  for label, name in enumerate(found):
    for path in files_of_class(split_dir, name):
      with open(path, 'rb') as f:
        problem = image_problem(f.read())
      if problem:
        skipped.append((path, problem))
      else:
        files.append(LabeledFile(path, label, name))
  listing = SplitListing(split_dir, found, files, skipped)
  log_skipped(skipped)
  _check_not_empty(listing)
  return listing


def log_skipped(skipped: Iterable[Tuple[str, str]]) -> None:
  for path, reason in skipped:
    logging.warning('skipped %s: %s', path, reason)


def _check_not_empty(listing: SplitListing) -> None:
  if not listing.files:
    raise UserError(f'{listing.split_dir}: no readable images '
                    f'({len(listing.skipped)} files skipped)')
  empty = [n for n, c in listing.count_by_class().items() if c == 0]
  if empty:
    raise UserError(
        f'{listing.split_dir}: class folder(s) with no readable images: ' +
        ', '.join(os.path.join(listing.split_dir, n) for n in empty))


def read_train_test(train_dir: str,
                    test_dir: str) -> Tuple[SplitListing, SplitListing]:
  train = read_split(train_dir)
  return train, read_split(test_dir, train.class_names)
