"""The retrain watcher's memory: what was triggered, for which data, and how it ended.

Kept in `<pipeline_root>/retrain_state.json` and replaced atomically (written
aside, then renamed), so a watcher killed at any moment leaves either the old
state or the new one, never half of one.
"""
import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
from typing import Dict, Iterator, List, Optional

from contract.errors import UserError

STATE_FILE = 'retrain_state.json'
LOCK_FILE = 'retrain.lock'

# Outcomes that close a data key for good; anything else may be retried.
PUSHED = 'pushed'
NOT_BLESSED = 'not_blessed'
ALREADY_PUBLISHED = 'already_published'
REFUSED = 'refused'
SUBMITTED = 'submitted'
GAVE_UP = 'gave_up'
FINAL_OUTCOMES = (PUSHED, NOT_BLESSED, ALREADY_PUBLISHED, REFUSED, SUBMITTED,
                  GAVE_UP)
# Not final: retried on the next tick.
RUNNING = 'running'
FAILED = 'failed'


@dataclasses.dataclass
class Attempt:
  data_key: str  # 'span-N' or the fingerprint of a plain layout
  outcome: str
  attempts: int = 1
  detail: str = ''
  version: Optional[str] = None
  new_images: int = 0
  updated: str = ''


@dataclasses.dataclass
class RetrainState:
  # The files of the data root when it was last handled: relative path ->
  # "size:mtime". New images are the ones missing or different here.
  manifest: Dict[str, str] = dataclasses.field(default_factory=dict)
  last_span: int = 0
  history: List[Attempt] = dataclasses.field(default_factory=list)

  def current(self) -> Optional[Attempt]:
    return self.history[-1] if self.history else None


def load(pipeline_root: str) -> RetrainState:
  path = os.path.join(pipeline_root, STATE_FILE)
  try:
    with open(path) as f:
      raw = json.load(f)
  except FileNotFoundError:
    return RetrainState()
  except json.JSONDecodeError as e:
    raise UserError(f'{path}: not valid JSON ({e}); move it aside to start '
                    'afresh') from None
  return RetrainState(
      manifest=raw.get('manifest', {}),
      last_span=raw.get('last_span', 0),
      history=[Attempt(**a) for a in raw.get('history', [])])


def save(pipeline_root: str, state: RetrainState) -> None:
  os.makedirs(pipeline_root, exist_ok=True)
  path = os.path.join(pipeline_root, STATE_FILE)
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(dataclasses.asdict(state), f, indent=1)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def record(pipeline_root: str, state: RetrainState, attempt: Attempt) -> None:
  """Appends or updates the attempt for its data key, and saves."""
  attempt.updated = datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')
  current = state.current()
  if current and current.data_key == attempt.data_key:
    state.history[-1] = attempt
  else:
    state.history.append(attempt)
  save(pipeline_root, state)


@contextlib.contextmanager
def exclusive(pipeline_root: str) -> Iterator[None]:
  """One watcher per pipeline root; a second one stops with a clear error."""
  os.makedirs(pipeline_root, exist_ok=True)
  path = os.path.join(pipeline_root, LOCK_FILE)
  with open(path, 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      raise UserError(f'another retrain watcher holds {path} '
                      f'({f.read().strip() or "pid unknown"})') from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()}\n')
    f.flush()
    yield
