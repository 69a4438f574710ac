"""Paths on a disk or in a bucket (gs://), behind the calls the project makes.

A local path goes through os, as before: links, FIFOs and names that are not
UTF-8 are seen for what they are. A path with a scheme goes through
TensorFlow's file layer (tf.io.gfile), which opens gs:// itself, so the data
root, the serving directory and the models can live in Cloud Storage. A
bucket has no links or special files, and its names are UTF-8.

TensorFlow loads only when a path with a scheme is touched: the console
commands that read local files stay quick to start.
"""
from concurrent import futures
import dataclasses
import os
import shutil
from typing import Iterator, List, Sequence, Tuple

from imgcls.contract.errors import UserError

_SCHEME = '://'
# The schemes TensorFlow 2.21's own file layer opens (and TF Serving's):
# tf.io.gfile.get_registered_schemes() less the local ones. S3 left TF for
# tensorflow-io, which has no build for TF 2.21.
OPENED_BY_TF = ('gs',)
# Requests in flight to a bucket at once, where each object is a round trip:
# its latency, not its bandwidth, bounds a reader of many small objects.
CONCURRENT_REQUESTS = 16


def is_remote(path: str) -> bool:
  return _SCHEME in path


def absolute(path: str) -> str:
  """os.path.abspath for a local path; a URL as given, less a trailing /."""
  return path.rstrip('/') if is_remote(path) else os.path.abspath(path)


def scheme_of(path: str) -> str:
  return path.split(_SCHEME, 1)[0] if is_remote(path) else ''


def check_scheme(path: str, flag: str) -> str:
  """`path`, if TensorFlow can open it; else a UserError naming the flag,
  the scheme and the way out, before anything runs (TF's own error would
  be a misleading "not found" or "not implemented")."""
  scheme = scheme_of(path)
  if scheme and scheme not in OPENED_BY_TF:
    raise UserError(
        f'{flag} {path}: TensorFlow cannot open {scheme}:// paths (TF 2.21 '
        'and TF Serving have no S3 file system); use a local folder or a '
        'mounted volume (a PVC), or a gs:// bucket')
  return path


def check_reachable(path: str, flag: str) -> str:
  """`path`, once its bucket answers (nothing to do for a local path); else
  a UserError saying whether the bucket is missing or the credentials were
  refused. A 403 (no right to read the bucket's own metadata) passes: the
  objects may still be readable."""
  check_scheme(path, flag)
  if not is_remote(path):
    return path
  import tensorflow as tf
  bucket = f'{scheme_of(path)}://{path.split(_SCHEME, 1)[1].split("/")[0]}'
  try:
    _gfile().stat(bucket)
  except tf.errors.NotFoundError:
    raise UserError(f'{flag} {path}: no such bucket {bucket}') from None
  except tf.errors.OpError as e:
    reason = e.message.splitlines()[0]
    if 'response code 403' not in reason:
      raise UserError(
          f'{flag} {path}: {bucket} cannot be reached: {reason} (the '
          'credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud auth '
          'application-default login, or Workload Identity on GKE)') from None
  return path


def _gfile():
  import tensorflow as tf  # only for paths with a scheme
  return tf.io.gfile


def isdir(path: str) -> bool:
  return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def exists(path: str) -> bool:
  return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isfile(path: str) -> bool:
  if not is_remote(path):
    return os.path.isfile(path)
  return _gfile().exists(path) and not _gfile().isdir(path)


def listdir(path: str) -> List[str]:
  """Entry names; FileNotFoundError when there is no such folder."""
  if not is_remote(path):
    return os.listdir(path)
  if not _gfile().isdir(path):
    raise FileNotFoundError(None, 'no such folder', path)
  return [name.rstrip('/') for name in _gfile().listdir(path)]


def makedirs(path: str) -> None:
  if is_remote(path):
    _gfile().makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


def copytree(source: str, destination: str) -> None:
  """shutil.copytree, where either side may be in a bucket (each file one
  copy, CONCURRENT_REQUESTS at a time)."""
  if not is_remote(source) and not is_remote(destination):
    shutil.copytree(source, destination)
    return
  pairs = []
  for parent, _, files in walk(source):
    relative = os.path.relpath(parent, source)
    target = (destination if relative == '.' else
              os.path.join(destination, relative))
    makedirs(target)
    pairs += [(os.path.join(parent, f), os.path.join(target, f))
              for f in files]
  gfile = _gfile()
  with futures.ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
    list(pool.map(lambda pair: gfile.copy(*pair, overwrite=True), pairs))


def rmtree(path: str) -> None:
  """shutil.rmtree, ignoring errors (what is already gone)."""
  if not is_remote(path):
    shutil.rmtree(path, ignore_errors=True)
    return
  import tensorflow as tf
  try:
    _gfile().rmtree(path)
  except tf.errors.OpError:
    pass


def write_bytes(path: str, data: bytes) -> None:
  """One object in a bucket (GCS makes it visible whole or not at all); a
  plain write on disk."""
  if is_remote(path):
    with _gfile().GFile(path, 'wb') as f:
      f.write(data)
    return
  with open(path, 'wb') as f:
    f.write(data)


@dataclasses.dataclass(frozen=True)
class BucketEntry:
  """An entry of a bucket's folder, with os.DirEntry's calls."""
  name: str
  path: str
  folder: bool

  def is_dir(self, follow_symlinks: bool = True) -> bool:
    del follow_symlinks  # a bucket has no links
    return self.folder

  def is_file(self, follow_symlinks: bool = True) -> bool:
    del follow_symlinks
    return not self.folder

  def is_symlink(self) -> bool:
    return False


def scandir(path: str) -> List:
  """The entries of a folder: os.DirEntry, or BucketEntry in a bucket (one
  listing call, as os.scandir is one)."""
  if not is_remote(path):
    with os.scandir(path) as entries:
      return list(entries)
  entries = []
  for name in _gfile().listdir(path):
    folder = name.endswith('/')
    name = name.rstrip('/')
    entries.append(BucketEntry(name, f'{path.rstrip("/")}/{name}', folder))
  return entries


def walk(path: str, onerror=None) -> Iterator[Tuple[str, List[str],
                                                     List[str]]]:
  if not is_remote(path):
    yield from os.walk(path, onerror=onerror)
    return
  def on_error(error):  # TF's OpError, as os.walk's OSError
    onerror(OSError(None, error.message.splitlines()[0], path))
  for parent, folders, files in _gfile().walk(
      path, onerror=on_error if onerror else None):
    yield parent.rstrip('/'), [f.rstrip('/') for f in folders], files


def read_bytes(path: str) -> bytes:
  """A file's bytes; OSError (with strerror) if it cannot be read."""
  if not is_remote(path):
    with open(path, 'rb') as f:
      return f.read()
  import tensorflow as tf
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      return f.read()
  except tf.errors.OpError as e:
    error = (FileNotFoundError if isinstance(e, tf.errors.NotFoundError)
             else OSError)
    raise error(None, e.message.splitlines()[0], path) from None


def size_and_mtime_ns(path: str) -> Tuple[int, int]:
  if not is_remote(path):
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns
  import tensorflow as tf
  try:
    stat = _gfile().stat(path)
  except tf.errors.NotFoundError:  # as os.stat says it
    raise FileNotFoundError(None, 'no such object', path) from None
  return stat.length, stat.mtime_nsec


def sizes_and_mtimes_ns(paths: Sequence[str]) -> List[Tuple[int, int]]:
  """size_and_mtime_ns of each path, in order; in a bucket, concurrently."""
  if not any(map(is_remote, paths)):
    return [size_and_mtime_ns(p) for p in paths]
  with futures.ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
    return list(pool.map(size_and_mtime_ns, paths))
