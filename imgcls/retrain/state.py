"""The retrain watcher's memory: what was triggered, for which data, and how
it ended.

Kept in `<pipeline_root>/retrain_state.json` and replaced atomically (written
aside, then renamed), so a watcher killed at any moment leaves either the old
state or the new one, never half of one.

The outcome model. Each attempt has an `outcome` (an `Outcome`, stored as its
string value) and a free-text `detail` saying why. An outcome is one of:

- in flight: `running` (a local run; a watcher killed mid-run resumes it) and
  `submitted` (a Kubeflow run, followed on later ticks through `kfp_run_id`);
- retriable: `failed` and `timed_out`, tried again on the next tick until
  `--max-tries` runs, then `gave_up`;
- final, closing the data for good: `pushed` (with `version`), `not_blessed`,
  `already_published`, `refused`, `gave_up`, and `rolled_back` (pushed,
  failed verification against the server, rolled back; `version` is the
  push that failed).

Three of the final outcomes wait for a person (retrain.person): `refused`
(answered by `--accept-anomalies`, by an edited schema, or for a change of
classes by `--no-baseline`), `gave_up` and `rolled_back` (answered by
`--retry`). The attempt that a person's answer starts records the answer in
`answer`, and appends to the history: the refusal stays on record.

A new outcome is a new `Outcome` member placed in one of the three sets
below; `load` accepts exactly the members, so an old watcher refuses a state
that it cannot interpret rather than misreading it.

`load` is the one reader. It checks the whole structure and reports any
corrupt state (unreadable, not UTF-8, not JSON, wrong shape, unknown keys,
wrong types, `{}`) with one message naming the file. It never resets a state
it cannot read: the file is left as it is for a person to look at.
"""
import contextlib
import dataclasses
import datetime
import enum
import fcntl
import json
import os
from typing import Any, Dict, Iterator, List, Optional

from imgcls.contract import files, records
from imgcls.contract.errors import UserError

STATE_FILE = 'retrain_state.json'
LOCK_FILE = 'retrain.lock'


class Outcome(enum.StrEnum):
  RUNNING = 'running'
  SUBMITTED = 'submitted'
  FAILED = 'failed'
  TIMED_OUT = 'timed_out'
  PUSHED = 'pushed'
  NOT_BLESSED = 'not_blessed'
  ALREADY_PUBLISHED = 'already_published'
  REFUSED = 'refused'
  # Pushed, failed verification (--verify-serving), rolled back.
  ROLLED_BACK = 'rolled_back'
  GAVE_UP = 'gave_up'


REFUSED_ANOMALIES = 'anomalies'  # by the data validation gate
REFUSED_CLASSES = 'classes'  # a label set other than the served model's

IN_FLIGHT = frozenset({Outcome.RUNNING, Outcome.SUBMITTED})
RETRIABLE = frozenset({Outcome.FAILED, Outcome.TIMED_OUT})
FINAL = frozenset(Outcome) - IN_FLIGHT - RETRIABLE
# Outcomes that need a person: `imgcls retrain` exits non-zero on them.
NEEDS_A_PERSON = RETRIABLE | {Outcome.REFUSED, Outcome.GAVE_UP,
                              Outcome.ROLLED_BACK}


@dataclasses.dataclass
class Attempt:
  data_key: str  # 'span-N' or 'files-<fingerprint>' of a plain layout
  outcome: Outcome
  attempts: int = 1
  detail: str = ''
  version: Optional[str] = None
  new_images: int = 0
  updated: str = ''  # ISO 8601, UTC
  # Kubeflow only: the run that carries this attempt, and when it was
  # submitted (for --kfp-timeout).
  kfp_run_id: Optional[str] = None
  submitted: str = ''
  # With `refused`: what refused the data (REFUSED_* below), and for
  # anomalies the schema file's digest then (person.schema_digest), so that
  # an edited schema is noticed.
  refused_for: str = ''
  schema_digest: str = ''
  # The person's answer that started this attempt (person.ANSWERS), kept
  # while the attempt is retried.
  answer: str = ''


@dataclasses.dataclass
class RetrainState:
  # The files of the data root when it was last handled: relative path ->
  # "size:mtime". New images are the ones missing or different here.
  manifest: Dict[str, str] = dataclasses.field(default_factory=dict)
  last_span: int = 0
  history: List[Attempt] = dataclasses.field(default_factory=list)

  def current(self) -> Optional[Attempt]:
    return self.history[-1] if self.history else None


class _Corrupt(records.RecordError):
  """What is wrong with a state file; load() turns it into a UserError."""


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')


def state_path(pipeline_root: str) -> str:
  return os.path.join(pipeline_root, STATE_FILE)


def load(pipeline_root: str) -> RetrainState:
  """The saved state, a fresh one when there is no file, else a UserError."""
  path = state_path(pipeline_root)
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    return RetrainState()
  except OSError as e:
    raise UserError(f'{path}: cannot read the retrain state: {e}') from None
  try:
    return _parse(data)
  except records.RecordError as e:  # _Corrupt, or a field of the wrong type
    raise UserError(
        f'{path}: corrupt retrain state ({e}). It was left as it is; fix it, '
        'or move it aside to start afresh (the data it lists as handled is '
        'then triggered again)') from None


def _parse(data: bytes) -> RetrainState:
  try:
    raw = json.loads(data.decode('utf-8'))
  except UnicodeDecodeError as e:
    raise _Corrupt(f'not UTF-8 text: {e}') from None
  except json.JSONDecodeError as e:
    raise _Corrupt(f'not valid JSON: {e}') from None
  # Strict, unknown keys included: a state this release did not write is none.
  fields = records.fields_of(RetrainState, raw, 'the state', required=True)
  return RetrainState(
      manifest=fields['manifest'], last_span=fields['last_span'],
      history=[_attempt(a, f'history[{i}]')
               for i, a in enumerate(fields['history'])])


def _attempt(raw: Any, where: str) -> Attempt:
  fields = records.fields_of(Attempt, raw, where, required=False)
  try:
    fields['outcome'] = Outcome(fields['outcome'])
  except ValueError:
    raise _Corrupt(f'{where}.outcome: unknown outcome {fields["outcome"]!r}; '
                   f'known: {[o.value for o in Outcome]}') from None
  if fields.get('attempts', 1) < 1:
    raise _Corrupt(f'{where}.attempts: must be 1 or more')
  return Attempt(**fields)


def save(pipeline_root: str, state: RetrainState) -> None:
  files.write_json_atomically(state_path(pipeline_root),
                              dataclasses.asdict(state))


def record(pipeline_root: str, state: RetrainState, attempt: Attempt) -> None:
  """Updates the attempt in progress for its data key, else appends; saves.

  A closed attempt is never overwritten: a person's answer to it is a new
  entry, and the history keeps both.
  """
  attempt.updated = now()
  current = state.current()
  # `current is attempt`: the watcher updates the recorded attempt in place.
  if current is attempt or (current and current.data_key == attempt.data_key
                            and current.outcome not in FINAL):
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
