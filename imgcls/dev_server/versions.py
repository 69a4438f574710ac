"""Which versions of a model are on disk, loaded and served.

The version policy is TF Serving's (file_system_storage_path_source.proto):
"latest" (the N highest version directories; the default, N = 1), "all", or
"specific" versions. Versions are swapped as TF Serving's
AvailabilityPreservingPolicy swaps them: new versions load fully first, and
versions the policy no longer wants are dropped only once one it wants is
available. A dropped version only leaves the table of servables; requests
already holding it finish on it. So a swap never fails a request, and a
version that fails to load leaves the old one serving.

Only directories named by digits alone are versions: a push that writes
`.tmp-3` or `3.tmp` and renames it to `3` is picked up only once complete.
"""
import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Dict, Optional, Set, Tuple

from imgcls.clients.status import code_from_number
from imgcls.contract import storage
from imgcls.dev_server.config_files import VersionPolicy
from imgcls.serving_dir.versions import version_dirs

AVAILABLE, LOADING, END = 'AVAILABLE', 'LOADING', 'END'

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VersionState:
  """A version's ModelVersionStatus: its state and the status of its load."""
  state: str
  error_code: str = 'OK'
  error_message: str = ''


def _fingerprint(path: str) -> Tuple:
  """What changes when files under `path` are added, removed or rewritten."""
  paths = [os.path.join(root, name)
           for root, _, names in storage.walk(path) for name in names]
  return tuple(sorted(
      (os.path.relpath(p, path), *stat)
      for p, stat in zip(paths, storage.sizes_and_mtimes_ns(paths))))


class ModelVersions:
  """The served versions of one model, kept in step with its base path.

  Args:
    name: the model name (for logs).
    base_path: the directory holding the version directories.
    load: loads (path, version) into a servable; raises if it cannot.
    policy: which versions on disk to serve.
  """

  def __init__(self, name: str, base_path: str,
               load: Callable[[str, int], object],
               policy: VersionPolicy = VersionPolicy()):
    self._name = name
    self._base_path = base_path
    self._load = load
    self._policy: Optional[VersionPolicy] = policy
    self._lock = threading.Lock()
    self._servables: Dict[int, object] = {}
    self._states: Dict[int, VersionState] = {}
    # Only the polling thread reads and writes these two.
    self._failed: Dict[int, Tuple] = {}  # version -> fingerprint at failure
    self._reported_empty = False

  def servable(self, version: Optional[int] = None):
    """The servable of `version`, or of the latest one; None if not loaded."""
    with self._lock:
      if version is None:
        version = max(self._servables, default=None)
      return self._servables.get(version)

  def latest_version(self) -> Optional[int]:
    with self._lock:
      return max(self._servables, default=None)

  def states(self) -> Dict[int, VersionState]:
    """Every version seen since start, loaded or not, with its state."""
    with self._lock:
      return dict(self._states)

  def reconfigure(self, base_path: str,
                  policy: Optional[VersionPolicy]) -> None:
    """A new base path and policy, from a re-read config; the next poll acts
    on them. A policy of None (the model left the config) serves nothing."""
    self._base_path = base_path
    self._policy = policy

  def poll(self) -> None:
    """Serves the versions the policy wants, loading them first if needed."""
    on_disk = {} if self._policy is None else version_dirs(self._base_path)
    self._report_empty(not on_disk and self._policy is not None)
    aspired = self._policy.aspired(on_disk) if on_disk else []
    for version in aspired:
      if self.servable(version) is None and self._worth_loading(
          version, on_disk[version]):
        self._load_version(version, on_disk[version])
    if not aspired or any(self.servable(v) is not None for v in aspired):
      self._retire_all_but(set(aspired))

  def _report_empty(self, empty: bool) -> None:
    if empty and not self._reported_empty:
      _log.warning('No versions of model %s found under %s; waiting for one',
                   self._name, self._base_path)
    self._reported_empty = empty

  def _worth_loading(self, version: int, path: str) -> bool:
    """False for a version that failed and has not changed since."""
    return self._failed.get(version) != _fingerprint(path)

  def _load_version(self, version: int, path: str) -> None:
    self._set_state(version, VersionState(LOADING))
    _log.info('Loading version %d of model %s from %s', version, self._name,
              path)
    started = time.monotonic()
    try:
      servable = self._load(path, version)
    except Exception as e:  # any load failure
      self._failed[version] = _fingerprint(path)
      code = code_from_number(getattr(e, 'error_code', None)).name
      self._set_state(version, VersionState(END, code, str(e)))
      serving = self.latest_version()
      _log.error(
          'Loading version %d of model %s failed (retried when its files '
          'change); %s: %s', version, self._name,
          'no version serves' if serving is None else
          f'version {serving} keeps serving', e)
      return
    self._failed.pop(version, None)
    with self._lock:
      self._servables[version] = servable
      self._states[version] = VersionState(AVAILABLE)
    _log.info('Version %d of model %s is AVAILABLE (loaded in %.1f s)',
              version, self._name, time.monotonic() - started)

  def _retire_all_but(self, keep: Set[int]) -> None:
    with self._lock:
      retired = {v: s for v, s in self._servables.items() if v not in keep}
      for version in retired:
        del self._servables[version]
        self._states[version] = VersionState(END)
    for version, servable in retired.items():
      servable.close()
      _log.info('Unloaded version %d of model %s', version, self._name)

  def _set_state(self, version: int, state: VersionState) -> None:
    with self._lock:
      self._states[version] = state
