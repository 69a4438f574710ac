"""Integer-versioned model directories, as TF Serving reads them.

TF Serving loads any all-digit child of the model base path the moment it
appears, with no completeness check (tensorflow/serving#572, #1086). So a
version is written under a hidden temporary name on the same filesystem and
renamed into place: the server sees nothing, or a complete SavedModel.
In a bucket, where a rename is a copy, serving_dir.bucket's protocol gives
the same guarantee.
"""
import logging
import os
import re
import shutil
from typing import Callable, Dict, List, Optional, Set
import uuid

from imgcls.contract import progress, storage
from imgcls.contract.errors import UserError
from imgcls.serving_dir import bucket, temporaries
from imgcls.serving_dir import provenance as provenance_lib

# TF Serving takes ASCII digits only ('٣'.isdigit() is true in Python).
_VERSION_NAME = re.compile('[0-9]+')
MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving's protos
# Either file makes a directory a SavedModel for TensorFlow's loader
# (tensorflow/tensorflow: tensorflow/python/saved_model/loader_impl.py,
# maybe_saved_model_directory).
SAVED_MODEL_FILES = ('saved_model.pb', 'saved_model.pbtxt')
# Entries already reported as skipped: a server polls every second.
_reported: Set[str] = set()


def version_dirs(base_dir: str) -> Dict[int, str]:
  """{version: path} of the directories TF Serving would take for versions:
  all-digit names within int64 (file_system_storage_path_source.cc); in a
  bucket, those published (serving_dir.bucket)."""
  if bucket.is_bucket(base_dir):
    return {v: path for v, path in bucket.numbered_dirs(base_dir).items()
            if v <= MAX_VERSION and bucket.is_published(path)}
  try:
    entries = list(os.scandir(base_dir))
  except (FileNotFoundError, NotADirectoryError):
    return {}
  return {
      int(e.name): e.path
      for e in entries
      if _VERSION_NAME.fullmatch(e.name) and int(e.name) <= MAX_VERSION and
      _is_dir(e)
  }


def _is_dir(entry: os.DirEntry) -> bool:
  """Whether the entry is a directory; an entry that cannot be followed (a
  link to itself) is none, said once, so that it blocks no other version."""
  try:
    return entry.is_dir()
  except OSError as e:
    if entry.path not in _reported:
      _reported.add(entry.path)
      progress.warn('%s: skipped, not a version: %s', entry.path,
                    e.strerror or e)
    return False


def saved_model_problem(path: str) -> Optional[str]:
  """Why `path` is not a SavedModel directory, or None when it may be one."""
  if storage.isfile(path):
    return ('not a SavedModel directory: a file (name the directory that '
            'holds saved_model.pb)')
  if not storage.isdir(path):
    return 'not a SavedModel directory: no such directory'
  if not any(storage.isfile(os.path.join(path, name))
             for name in SAVED_MODEL_FILES):
    return 'not a SavedModel directory: no saved_model.pb in it'
  return None


def check_saved_model(path: str) -> str:
  """`path`, or a UserError naming it when it holds no SavedModel."""
  problem = saved_model_problem(path)
  if problem:
    raise UserError(f'{path}: {problem}')
  return path


def versions(base_dir: str) -> List[int]:
  """The published versions under base_dir, ascending."""
  return sorted(version_dirs(base_dir))


def latest_version_dir(base_dir: str):
  """The newest version's directory, or None when nothing is published."""
  found = versions(base_dir)
  return os.path.join(base_dir, str(found[-1])) if found else None


def publish(base_dir: str, write: Callable[[str], None],
            min_version: int = 1) -> int:
  """Publishes what `write(tmp_dir)` writes as the next version; returns it.

  The new version is above every existing one and at least `min_version`.
  If `write` fails, or writes no SavedModel, nothing is left; if the process
  dies, a hidden temporary directory is, which TF Serving ignores and the
  next publish removes (serving_dir.temporaries).
  """
  if bucket.is_bucket(base_dir):
    return _publish_in_bucket(base_dir, write, min_version)
  os.makedirs(base_dir, exist_ok=True)
  temporaries.remove_abandoned(base_dir)
  with temporaries.temporary_dir(base_dir) as tmp_dir:
    write(tmp_dir)
    _check_written(base_dir, tmp_dir)
    while True:
      version = max([min_version - 1, *versions(base_dir)]) + 1
      target = os.path.join(base_dir, str(version))
      try:
        os.rename(tmp_dir, target)  # atomic; fails if target exists
        return version
      except OSError:
        if not os.path.exists(target):
          raise


def _check_written(base_dir: str, written: str) -> None:
  # TF Serving would take it as the newest version and serve nothing.
  problem = saved_model_problem(written)
  if problem:
    raise UserError(f'nothing published under {base_dir}: what was written '
                    f'is {problem}')


def _publish_in_bucket(base_dir: str, write: Callable[[str], None],
                       min_version: int) -> int:
  """publish, by serving_dir.bucket's protocol: written under its number,
  complete, then marked, then named in the model config."""
  version = max([min_version - 1, *bucket.numbered_dirs(base_dir)]) + 1
  target = os.path.join(base_dir, str(version))
  try:
    write(target)
    _check_written(base_dir, target)
  except BaseException:
    storage.rmtree(target)
    raise
  bucket.mark_published(target)
  bucket.serve(base_dir, version)
  return version


def prune(base_dir: str, keep: int) -> List[int]:
  """Deletes all but the newest `keep` versions (never the newest); returns
  the deleted ones.

  Each goes at once (renamed to a hidden name, then deleted), so TF Serving
  never sees half a version; its provenance is kept (serving_dir.provenance).
  """
  keep = max(1, keep)
  old = versions(base_dir)[:-keep]
  when = provenance_lib.utc_now()
  for version in old:
    path = os.path.join(base_dir, str(version))
    try:
      provenance = provenance_lib.of_version(path)
    except provenance_lib.ProvenanceError as e:
      logging.warning('%s; pruned without it', e)
      provenance = provenance_lib.Provenance()
    provenance_lib.record_pruned(base_dir, version, provenance, when)
    if bucket.is_bucket(base_dir):
      bucket.unpublish(path)
    else:
      _remove_at_once(base_dir, version, path)
    logging.info('removed old version %s/%d', base_dir, version)
  return old


def _remove_at_once(base_dir: str, version: int, path: str) -> None:
  doomed = os.path.join(base_dir, f'{temporaries.TMP_PREFIX}pruned-'
                        f'{version}-{uuid.uuid4().hex}')
  os.rename(path, doomed)
  # A clean-up may be deleting it too: what one leaves, the other removes.
  shutil.rmtree(doomed, ignore_errors=True)
