"""Where a published version came from: the record the Pusher (or a rollback)
writes into it, and keeps beside the versions once the version is pruned.

Written into the version as `assets.extra/imgcls_provenance.json`, before the
version is renamed into place, so a version and its provenance appear
together; TF Serving ignores assets.extra. When a version is pruned, its
record moves to `<base>/.imgcls-pruned/<N>.json`, so `imgcls versions` still
lists it and `imgcls rollback --to N` can say why N is gone.
"""
import dataclasses
import datetime
import json
import os
from typing import Dict, List, Optional

from imgcls.contract import files, names, records, storage

PUSH, ROLLBACK = 'push', 'rollback'


@dataclasses.dataclass(frozen=True)
class Provenance:
  """What `imgcls versions` shows of a version; unknown values are empty."""
  kind: str = PUSH
  pushed_at: str = ''  # ISO 8601, UTC
  model_uri: str = ''  # the Trainer's Model artifact
  model_id: Optional[int] = None  # its MLMD artifact id
  pipeline_name: str = ''
  pipeline_run_id: str = ''  # the MLMD pipeline_run context
  train_spans: List[int] = dataclasses.field(default_factory=list)
  accuracy: Optional[float] = None  # on the test split
  # The served model it was gated against.
  baseline_version: Optional[int] = None
  baseline_accuracy: Optional[float] = None
  rollback_of: Optional[int] = None  # for a rollback: the version republished
  pruned_at: str = ''  # set when the version is pruned


def utc_now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')


class ProvenanceError(Exception):
  """A provenance file that cannot be read; the message names the file."""


def of_version(version_dir: str) -> Provenance:
  """The version's provenance; an empty one if it has none (not pushed by
  this project's Pusher); ProvenanceError if the file is unreadable."""
  return _read(os.path.join(version_dir, names.PROVENANCE_FILE))


def write_into(version_dir: str, provenance: Provenance) -> None:
  """Writes (or replaces) the provenance inside a version being written."""
  _write(os.path.join(version_dir, names.PROVENANCE_FILE), provenance)


def pruned_path(base_dir: str, version: int) -> str:
  return os.path.join(base_dir, names.PRUNED_VERSIONS_DIR, f'{version}.json')


def record_pruned(base_dir: str, version: int, provenance: Provenance,
                  when: str) -> None:
  """Keeps a pruned version's provenance, replaced atomically."""
  _write(pruned_path(base_dir, version),
         dataclasses.replace(provenance, pruned_at=when))


def pruned(base_dir: str) -> Dict[int, Provenance]:
  """{version: provenance} of the pruned versions; unreadable records are
  skipped (they describe versions that are gone anyway)."""
  directory = os.path.join(base_dir, names.PRUNED_VERSIONS_DIR)
  try:
    entries = storage.listdir(directory)
  except FileNotFoundError:
    return {}
  found = {}
  for name in entries:
    stem, ext = os.path.splitext(name)
    if ext == '.json' and stem.isascii() and stem.isdigit():
      try:
        found[int(stem)] = _read(os.path.join(directory, name))
      except ProvenanceError:
        continue
  return found


def _read(path: str) -> Provenance:
  try:
    raw = json.loads(storage.read_bytes(path).decode('utf-8'))
  except FileNotFoundError:
    return Provenance()
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ProvenanceError(f'{path}: unreadable provenance ({e})') from None
  try:  # known keys only: an earlier release's file holds fewer
    return records.from_json(Provenance, raw, path)
  except records.RecordError as e:
    raise ProvenanceError(str(e)) from None


def _write(path: str, provenance: Provenance) -> None:
  files.write_json_atomically(path, dataclasses.asdict(provenance))
