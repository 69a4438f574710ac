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
from typing import Callable, Dict, List
import uuid

from imgcls.serving_dir import provenance as provenance_lib
from imgcls.serving_dir import temporaries

# TF Serving takes ASCII digits only ('٣'.isdigit() is true in Python).
_VERSION_NAME = re.compile('[0-9]+')
MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving's protos


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
  directory is, which TF Serving ignores and the next publish removes
  (serving_dir.temporaries).
  """
  os.makedirs(base_dir, exist_ok=True)
  temporaries.remove_abandoned(base_dir)
  with temporaries.temporary_dir(base_dir) as tmp_dir:
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
    doomed = os.path.join(
        base_dir, f'{temporaries.TMP_PREFIX}pruned-{version}-{uuid.uuid4().hex}')
    os.rename(path, doomed)
    # A clean-up may be deleting it too: what one leaves, the other removes.
    shutil.rmtree(doomed, ignore_errors=True)
    logging.info('removed old version %s/%d', base_dir, version)
  return old
