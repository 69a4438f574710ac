"""The versions a serving directory has published, and going back to one.

A rollback republishes an earlier version as a new highest one, through the
same atomic publish as a push. TF Serving's default policy serves the latest
version, so every server watching the directory, locally or on Kubernetes,
switches to it with no configuration change; and the next pipeline run,
whose baseline is the served model, is gated against it.
"""
import dataclasses
import shutil
from typing import Dict, List, Optional, Tuple

from imgcls.contract import storage
from imgcls.contract.errors import UserError
from imgcls.serving_dir import provenance as provenance_lib
from imgcls.serving_dir import versions as versions_lib
from imgcls.serving_dir.provenance import Provenance

SERVING, PUBLISHED, PRUNED = 'serving', 'published', 'pruned'


@dataclasses.dataclass(frozen=True)
class VersionRecord:
  version: int
  # SERVING: the newest on disk, which the latest policy serves once it has
  # loaded; PUBLISHED: older, still on disk; PRUNED: deleted, its record kept.
  state: str
  provenance: Provenance
  problem: str = ''  # why the provenance could not be read


def history(base_dir: str) -> List[VersionRecord]:
  """Every version published under base_dir that is known, newest first."""
  on_disk = versions_lib.version_dirs(base_dir)
  newest = max(on_disk, default=None)
  records = {
      version: VersionRecord(version, PRUNED, provenance)
      for version, provenance in provenance_lib.pruned(base_dir).items()
      if version not in on_disk
  }
  for version, path in on_disk.items():
    state = SERVING if version == newest else PUBLISHED
    try:
      records[version] = VersionRecord(version, state,
                                       provenance_lib.of_version(path))
    except provenance_lib.ProvenanceError as e:
      records[version] = VersionRecord(version, state, Provenance(), str(e))
  return [records[v] for v in sorted(records, reverse=True)]


def rollback(base_dir: str, to: Optional[int] = None) -> Tuple[int, int]:
  """Republishes version `to` (default: the one before the newest) as the new
  highest version; returns (new version, `to`). UserError if `to` is not
  there, is the newest, or holds no SavedModel."""
  on_disk = versions_lib.version_dirs(base_dir)
  to = _target(base_dir, on_disk, to)
  source = on_disk[to]
  problem = versions_lib.saved_model_problem(source)
  if problem:
    raise UserError(f'version {to} of {base_dir} cannot be served again, '
                    f'nothing was published: {source} is {problem}')
  try:
    copied = provenance_lib.of_version(source)
  except provenance_lib.ProvenanceError:
    copied = Provenance()
  rolled_back = dataclasses.replace(copied, kind=provenance_lib.ROLLBACK,
                                    rollback_of=to,
                                    pushed_at=provenance_lib.utc_now())

  def write(tmp_dir: str) -> None:
    storage.copytree(source, tmp_dir)
    provenance_lib.write_into(tmp_dir, rolled_back)

  try:
    return versions_lib.publish(base_dir, write), to
  except (OSError, shutil.Error) as e:
    raise UserError(f'rollback to version {to} of {base_dir} failed, nothing '
                    f'was published: {e}') from None


def _target(base_dir: str, on_disk: Dict[int, str], to: Optional[int]) -> int:
  published = sorted(on_disk)
  listing = (f'published: {", ".join(map(str, published))}' if published
             else 'nothing is published')
  if to is None:
    if len(published) < 2:
      raise UserError(f'{base_dir}: no earlier version to roll back to '
                      f'({listing})')
    return published[-2]
  if to in on_disk:
    if to == published[-1]:
      raise UserError(f'version {to} is already the newest under {base_dir}, '
                      'the one served')
    return to
  pruned = provenance_lib.pruned(base_dir).get(to)
  if pruned is not None:
    raise UserError(f'version {to} was pruned from {base_dir} at '
                    f'{pruned.pruned_at or "an unknown time"} (--keep-versions '
                    f'keeps the newest); {listing}')
  raise UserError(f'{base_dir} has no version {to}; {listing}')
