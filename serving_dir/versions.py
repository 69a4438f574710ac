"""Integer-versioned model directories, as TF Serving reads them.

TF Serving loads any all-digit child of the model base path the moment it
appears, with no completeness check (tensorflow/serving#572, #1086). So a
version is written under a hidden temporary name on the same filesystem and
renamed into place: the server sees nothing, or a complete SavedModel.
"""
import logging
import os
import re
import shutil
import time
import uuid
from typing import Callable, Dict, List

TMP_PREFIX = '.tmp-'
# TF Serving takes ASCII digits only ('٣'.isdigit() is true in Python).
_VERSION_NAME = re.compile('[0-9]+')
MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving's protos
# A temporary directory this old was left by a writer that died.
_STALE_AFTER_S = 3600


def version_dirs(base_dir: str) -> Dict[int, str]:
  """{version: path} of the directories TF Serving would take for versions:
  all-digit names within int64 (file_system_storage_path_source.cc)."""
  try:
    entries = list(os.scandir(base_dir))
  except (FileNotFoundError, NotADirectoryError):
    return {}
  return {
      int(e.name): e.path
      for e in entries
      if _VERSION_NAME.fullmatch(e.name) and int(e.name) <= MAX_VERSION and
      e.is_dir()
  }


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
  If `write` fails, nothing is left; if the process dies, a hidden temporary
  directory is, which TF Serving ignores and a later publish removes.
  """
  os.makedirs(base_dir, exist_ok=True)
  _remove_stale_temporaries(base_dir)
  tmp_dir = os.path.join(base_dir, f'{TMP_PREFIX}{uuid.uuid4().hex}')
  try:
    write(tmp_dir)
    while True:
      version = max([min_version - 1, *versions(base_dir)]) + 1
      target = os.path.join(base_dir, str(version))
      try:
        os.rename(tmp_dir, target)  # atomic; fails if target exists
        return version
      except OSError:
        if not os.path.exists(target):
          raise
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)


def prune(base_dir: str, keep: int) -> List[int]:
  """Deletes all but the newest `keep` versions (never the newest); returns
  the deleted ones."""
  keep = max(1, keep)
  old = versions(base_dir)[:-keep]
  for version in old:
    shutil.rmtree(os.path.join(base_dir, str(version)))
    logging.info('removed old version %s/%d', base_dir, version)
  return old


def _remove_stale_temporaries(base_dir: str) -> None:
  for entry in os.scandir(base_dir):
    if (entry.name.startswith(TMP_PREFIX) and
        time.time() - entry.stat().st_mtime > _STALE_AFTER_S):
      shutil.rmtree(entry.path, ignore_errors=True)
