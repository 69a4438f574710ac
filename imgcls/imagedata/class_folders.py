"""Reading the class-folder layout: `<split_dir>/<class name>/<image files>`.

The sorted class folder names are the label vocabulary. Every problem a user
can make with such a tree stops with an error that names the path at fault;
unreadable files are skipped and listed instead, because one bad file in a
large dataset should not stop a run.
"""
import dataclasses
import io
import os
import struct
from typing import Dict, Iterable, List, Optional, Sequence, Tuple
import zlib

import numpy as np
from PIL import Image

from imgcls.contract import names, progress, storage
from imgcls.contract.errors import UserError
from imgcls.imagedata import image_header


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
  """(height, width, 3) uint8 pixels of any mode (GIF: its first frame), for
  the report's pictures. Pixels sent to a model are decoded as the model
  decodes them (preprocessing.client_rgb)."""
  with Image.open(io.BytesIO(encoded)) as image:
    return np.asarray(image.convert('RGB'))


def pixel_size(encoded: bytes) -> Tuple[int, int]:
  """(width, height), from the header only."""
  header = image_header.read_header(encoded)
  return header.width, header.height


class ImageProblem(Exception):
  """Why a file cannot be an example; the message is the listed reason."""


def display_path(path: str) -> str:
  """`path` as text that is always valid UTF-8, for lists, logs and JSON.

  Python keeps the bytes of a name that is not UTF-8 as lone surrogates,
  which cannot be encoded; here they are shown as \\xNN escapes instead.
  """
  return os.fsencode(path).decode('utf-8', 'backslashreplace')


def image_problem(data: bytes,
                  max_pixels: int = names.MAX_IMAGE_PIXELS) -> Optional[str]:
  """Why `data` is not a usable PNG/JPEG/BMP/GIF image, or None if it is."""
  try:
    check_image(data, max_pixels)
  except ImageProblem as e:
    return str(e)
  return None


def check_image(data: bytes, max_pixels: int = names.MAX_IMAGE_PIXELS
               ) -> image_header.ImageHeader:
  """The header of a usable image; ImageProblem says why `data` is not one.

  The header is read first, so a decompression bomb is refused by its
  declared size before anything is decoded. A truncated or damaged file can
  have a valid header, so the whole file is checked too: PNG chunk by chunk
  against its CRCs (the common case, ten times cheaper than decoding), the
  other formats by decoding them with Pillow.
  """
  try:
    header = image_header.read_header(data)
  except image_header.HeaderError as e:
    raise ImageProblem(str(e)) from None
  if header.pixels > max_pixels:
    raise ImageProblem(
        f'{header.width}x{header.height} = {header.pixels:,} pixels, more '
        f'than the limit of {max_pixels:,} (--max-image-pixels)')
  problem = (_png_problem(memoryview(data)) if header.format == image_header.PNG
             else _decoding_problem(data, header.format))
  if problem:
    raise ImageProblem(problem)
  return header


def _decoding_problem(data: bytes, image_format: str) -> Optional[str]:
  try:
    with Image.open(io.BytesIO(data), formats=[image_format]) as image:
      image.load()
  except Image.UnidentifiedImageError:  # its message holds a BytesIO's repr
    return f'not a readable image: damaged {image_format} header'
  except Exception as e:  # PIL raises many
    return f'not a readable image: {e}'
  return None


def _png_problem(data: memoryview) -> Optional[str]:
  """Walks the chunks (length, type, data, CRC) of a PNG up to IEND."""
  position = len(image_header.PNG_SIGNATURE)
  while position + 12 <= len(data):
    length, kind = struct.unpack_from('>I4s', data, position)
    end = position + 12 + length
    if end > len(data):
      break
    (crc,) = struct.unpack_from('>I', data, end - 4)
    if zlib.crc32(data[position + 4:end - 4]) != crc:
      return (f'not a readable image: PNG chunk {kind.decode("latin-1")} '
              'is damaged')
    if kind == b'IEND':
      return None
    position = end
  return 'not a readable image: truncated PNG'


def read_image(path: str, max_pixels: int = names.MAX_IMAGE_PIXELS
              ) -> Tuple[bytes, image_header.ImageHeader]:
  """A listed file's bytes and header; ImageProblem if it cannot be read or
  is not a usable image."""
  try:
    data = storage.read_bytes(path)
  except OSError as e:
    raise ImageProblem(f'cannot read: {e.strerror}') from None
  return data, check_image(data, max_pixels)


def class_names_of(split_dir: str) -> List[str]:
  """The sorted class folder names under `split_dir`."""
  if not storage.isdir(split_dir):
    raise UserError(f'{split_dir}: no such directory (expected '
                    f'{split_dir}/<class name>/<images>)')
  names_found = sorted(e.name for e in storage.scandir(split_dir)
                       if e.is_dir() and not e.name.startswith('.'))
  if not names_found:
    raise UserError(f'{split_dir}: no class folders (expected '
                    f'{split_dir}/<class name>/<images>)')
  for name in names_found:
    if not _is_utf8(name):
      raise UserError(f'{display_path(os.path.join(split_dir, name))}: a '
                      'class folder name must be valid UTF-8 (it becomes the '
                      'label name); rename the folder')
  return names_found


def class_files(split_dir: str, class_name: str
               ) -> Tuple[List[str], List[Tuple[str, str]]]:
  """The files of one class folder that may be images, sorted, and the
  entries that cannot be examples, with why.

  Every visible entry is one or the other: files in subfolders, broken links,
  links to folders, FIFOs and devices, and names that are not UTF-8 are
  listed as skipped, never dropped without a word. Only hidden names
  (.DS_Store, editors' temporaries) are not data and are passed over.
  """
  class_dir = os.path.join(split_dir, class_name)
  files: List[str] = []
  skipped: List[Tuple[str, str]] = []
  try:
    entries = storage.scandir(class_dir)
  except OSError as e:
    raise UserError(f'{display_path(class_dir)}: cannot list the class '
                    f'folder: {e.strerror}') from None
  for entry in entries:
    if entry.name.startswith('.'):
      continue
    if entry.is_dir(follow_symlinks=False):
      skipped += _nested_files(entry.path, class_dir)
      continue
    problem = _entry_problem(entry)
    if problem:
      skipped.append((entry.path, problem))
    else:
      files.append(entry.path)
  return sorted(files), sorted(skipped)


def _entry_problem(entry) -> Optional[str]:
  """Why a class folder entry cannot be read as an image, from its name and
  type alone (a FIFO would block a reader for ever)."""
  if not _is_utf8(entry.name):
    return 'file name is not valid UTF-8; rename the file'
  if entry.is_symlink() and not os.path.exists(entry.path):
    return (f'broken symbolic link to '
            f'{display_path(os.readlink(entry.path))}')
  if entry.is_dir():
    return 'a link to a folder, not an image file'
  if not entry.is_file():
    return 'not a regular file (a FIFO, socket or device)'
  return None


def _nested_files(folder: str, class_dir: str) -> List[Tuple[str, str]]:
  """Every file under a subfolder of a class folder, as skipped: images must
  sit directly in their class folder, or their label would be a guess."""
  reason = (f'in a subfolder of class folder {display_path(class_dir)}; '
            'images must sit directly in their class folder')
  found = []
  def unlisted(error: OSError):
    found.append((error.filename, f'cannot list: {error.strerror}'))
  for root, _, file_names in storage.walk(folder, onerror=unlisted):
    found += [(os.path.join(root, n), reason) for n in file_names
              if not n.startswith('.')]
  return found


def _is_utf8(name: str) -> bool:
  try:
    name.encode()
  except UnicodeEncodeError:
    return False
  return True


def read_split(split_dir: str,
               class_names: Optional[Sequence[str]] = None,
               max_pixels: int = names.MAX_IMAGE_PIXELS) -> SplitListing:
  """Lists and checks every file of a split.

  Args:
    split_dir: the directory holding one folder per class.
    class_names: the vocabulary to use (e.g. the training split's); the
      split's own folders must be exactly these.
    max_pixels: images declaring more pixels are skipped.
  """
  found = class_names_of(split_dir)
  if class_names is not None and list(class_names) != found:
    raise UserError(
        f'{split_dir}: class folders {found} differ from the training '
        f'classes {list(class_names)}')
  files, skipped = [], []
  for label, name in enumerate(found):
    paths, not_images = class_files(split_dir, name)
    skipped += [(display_path(p), reason) for p, reason in not_images]
    for path in paths:
      try:
        read_image(path, max_pixels)
      except ImageProblem as e:
        skipped.append((display_path(path), str(e)))
      else:
        files.append(LabeledFile(path, label, name))
  listing = SplitListing(split_dir, found, files, sorted(skipped))
  log_skipped(listing.skipped)
  _check_not_empty(listing)
  return listing


def log_skipped(skipped: Iterable[Tuple[str, str]]) -> None:
  for path, reason in skipped:
    progress.warn('skipped %s: %s', path, reason)


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
