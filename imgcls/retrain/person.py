"""What waits for a person after a retrain, and the command that answers it.

Retraining stops for a person in three cases, all final outcomes
(retrain.state): refused data, a run given up on after --max-tries, and a
push rolled back by --verify-serving. Nothing answers them on its own: a
cron-driven watcher would otherwise refuse, give up or roll back on every
tick. A person answers through `imgcls retrain` itself:

- `refused` by the data validation gate: `--accept-anomalies` trains on the
  data as it is; or the schema file is edited to expect it, which the next
  plain tick notices (the file's digest differs from the one recorded with
  the refusal);
- `refused` for a change of classes: `--no-baseline` publishes the new label
  set on purpose (clients must follow);
- `gave_up` and `rolled_back`: `--retry`.

The answer is recorded in the attempt it starts (Attempt.answer), and it holds
while that attempt is retried: a retry of an accepted run accepts again.
"""
import dataclasses
import hashlib
import os
import shlex
from typing import List, Optional, Sequence

from imgcls.contract import names
from imgcls.pipeline.config import PipelineConfig
from imgcls.retrain import state as state_lib
from imgcls.retrain.state import Attempt, Outcome

ACCEPT = '--accept-anomalies'
NO_BASELINE = '--no-baseline'
RETRY = '--retry'
EDITED_SCHEMA = 'edited schema'
ANSWERS = (ACCEPT, NO_BASELINE, RETRY, EDITED_SCHEMA)

# Flags of one invocation that are not part of the watcher's configuration:
# left out of the command that answers, which adds its own. Flags that take
# a value are paired with True.
_MODE_FLAGS = {'--once': False, '--watch': False, '--status': False,
               '--interval': True, ACCEPT: False, NO_BASELINE: False,
               RETRY: False}
# Secrets are not echoed to a terminal or a CronJob's log.
_SECRET_FLAGS = ('--kfp-token',)


@dataclasses.dataclass(frozen=True)
class Waiting:
  """An attempt that waits for a person: why, and the flag that answers."""
  attempt: Attempt
  why: str
  flag: str
  schema_file: str = ''  # with refused anomalies: editing it answers too


def waiting(state: state_lib.RetrainState,
            config: PipelineConfig) -> Optional[Waiting]:
  current = state.current()
  if current is None:
    return None
  if current.outcome == Outcome.REFUSED:
    if current.refused_for == state_lib.REFUSED_CLASSES:
      return Waiting(current, 'its classes differ from the served model\'s; '
                     'to publish the new label set on purpose (and update '
                     'the clients)', NO_BASELINE)
    return Waiting(current, 'the data validation gate refused the data; to '
                   'train on it as it is', ACCEPT,
                   schema_file=schema_file(config))
  if current.outcome == Outcome.GAVE_UP:
    return Waiting(current, f'given up after {current.attempts} failed runs; '
                   'once the cause is fixed, to run again', RETRY)
  if current.outcome == Outcome.ROLLED_BACK:
    return Waiting(current, 'the push was rolled back after it failed '
                   'verification against the server; once the server is '
                   'fixed, to train and push again', RETRY)
  return None


def answer_of(state: state_lib.RetrainState, config: PipelineConfig,
              retry: bool) -> Optional[str]:
  """The answer this invocation gives to what waits, if it gives one."""
  pending = waiting(state, config)
  if pending is None:
    return None
  if pending.flag == ACCEPT and config.data_validation.accept_anomalies:
    return ACCEPT
  # A refusal recorded without a digest (by a watcher before this one) is
  # never taken as answered: nothing says what the schema was.
  if (pending.flag == ACCEPT and pending.attempt.schema_digest and
      schema_digest(config) != pending.attempt.schema_digest):
    return EDITED_SCHEMA
  if pending.flag == NO_BASELINE and not config.compare_with_baseline:
    return NO_BASELINE
  if pending.flag == RETRY and retry:
    return RETRY
  return None


def answered_config(config: PipelineConfig, attempt: Attempt,
                    answered: Optional[Attempt]) -> PipelineConfig:
  """The run's configuration with the attempt's answer applied: on every
  try of the attempt, not only the one the person started."""
  if attempt.answer == ACCEPT:
    return dataclasses.replace(config, data_validation=dataclasses.replace(
        config.data_validation, accept_anomalies=True))
  if attempt.answer == NO_BASELINE:
    return dataclasses.replace(config, compare_with_baseline=False)
  if (attempt.answer == RETRY and answered is not None and
      answered.outcome == Outcome.ROLLED_BACK):
    # The rolled-back model stays published under its version, and the
    # Pusher does not publish a model twice: a retry trains a new one.
    return dataclasses.replace(config, enable_cache=False)
  return config


def schema_file(config: PipelineConfig) -> str:
  return os.path.join(config.schema_dir, names.SCHEMA_FILE)


def schema_digest(config: PipelineConfig) -> str:
  """The kept schema's SHA-256, '' while there is none. Read as bytes from
  the schema directory, which the watcher sees at the same path as the
  pipeline's steps (the data PVC on Kubeflow)."""
  try:
    with open(schema_file(config), 'rb') as f:
      return hashlib.sha256(f.read()).hexdigest()
  except FileNotFoundError:
    return ''


def answer_command(argv: Sequence[str], flag: str) -> str:
  """The invocation `argv` (`imgcls` arguments) as one `--once` tick that
  answers with `flag`: the same data, pipeline and Kubeflow flags."""
  tokens = list(argv)
  if 'retrain' in tokens:
    tokens = tokens[tokens.index('retrain') + 1:]
  kept: List[str] = []
  i = 0
  while i < len(tokens):
    name, has_value, _ = tokens[i].partition('=')
    if name in _MODE_FLAGS or name in _SECRET_FLAGS:
      takes_value = name in _SECRET_FLAGS or _MODE_FLAGS[name]
      i += 2 if takes_value and not has_value else 1
      if name in _SECRET_FLAGS:
        kept += [name, '"$KFP_TOKEN"']
      continue
    kept.append(shlex.quote(tokens[i]))
    i += 1
  return ' '.join(['imgcls', 'retrain', '--once', *kept] +
                  ([flag] if flag else []))


def describe(pending: Waiting, argv: Sequence[str]) -> List[str]:
  """Lines for the terminal: what waits, and each command that answers."""
  attempt = pending.attempt
  lines = [f'{attempt.data_key or "the data"} waits for a person: '
           f'{attempt.outcome} {attempt.updated}'.rstrip(),
           f'  {attempt.detail}' if attempt.detail else '',
           f'  {pending.why}:',
           f'    {answer_command(argv, pending.flag)}']
  if pending.schema_file:
    lines += [f'  or edit {pending.schema_file} to expect this data, then:',
              f'    {answer_command(argv, "")}']
  return [line for line in lines if line]
