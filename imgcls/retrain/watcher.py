"""Retraining when new data lands: detect, decide, trigger, remember.

New data is a span newer than the last one handled (`data_root/span-N/`),
and image files added or changed since the last handled scan: without spans
any, with spans those that a run reads (its window of spans, its test span),
so that a span handled once (pushed, refused, given up on) and then topped
up is retrained.
A run is triggered only for at least `min_new_images` new images, locally
with LocalDagRunner or on Kubeflow Pipelines.

The label set is part of the served model's contract. Data whose classes
differ from the served model's is refused, with the classes named, and
nothing is trained: clients of the served model would otherwise get classes
they do not expect. `imgcls run --no-baseline` trains on the new label set
deliberately.

Every decision is recorded in the state file before and after the run
(retrain.state), so a restarted watcher knows what it did: data already
handled is never triggered again; an attempt cut short by a kill is resumed,
which cannot publish twice (cached steps, and a Pusher that does not publish
the same trained model again); failures are retried up to `max_tries`.

On Kubeflow Pipelines (retrain.kfp_runs) a tick submits a run and later ticks
follow it to its end, so the outcome is recorded and failures are retried
there too; the state file says which run carries the attempt.
"""
import dataclasses
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

from imgcls.contract import storage
from imgcls.contract.errors import UserError
from imgcls.imagedata import data_layout
from imgcls.pipeline.config import PipelineConfig
from imgcls.retrain import kfp_runs, person
from imgcls.retrain import state as state_lib
from imgcls.retrain.state import Attempt, Outcome
from imgcls.serving_dir import versions as model_versions

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RetrainOptions:
  pipeline: PipelineConfig
  min_new_images: int = 1
  max_tries: int = 3
  # Runs go to Kubeflow Pipelines when set, else run here.
  kfp: Optional[kfp_runs.KfpTarget] = None
  # A person's `--retry` of data given up on or rolled back (retrain.person).
  retry: bool = False


@dataclasses.dataclass
class NewData:
  data_key: str
  new_images: int
  manifest: Dict[str, str]
  latest_span: int


def scan(data_root: str) -> Dict[str, str]:
  """Every image file of the layout: relative path -> 'size:mtime_ns'."""
  roots = ([data_layout.span_dir(data_root, s)
            for s in data_layout.span_numbers(data_root)] or [data_root])
  files = []
  for root in roots:
    for split in data_layout.SPLITS:
      split_dir = os.path.join(root, split)
      if storage.isdir(split_dir):
        files += data_layout.files_of_split(data_root, split_dir)
  stats = storage.sizes_and_mtimes_ns([f.path for f in files])
  return {f.relative_path: f'{size}:{mtime_ns}'
          for f, (size, mtime_ns) in zip(files, stats)}


def detect(data_root: str, state: state_lib.RetrainState,
           span_window: int = 1) -> NewData:
  if not storage.isdir(data_root):
    raise UserError(f'{data_root}: no such data directory')
  manifest = scan(data_root)
  spans = data_layout.span_numbers(data_root)
  if spans:
    newer = tuple(f'span-{s}{os.sep}' for s in spans if s > state.last_span)
    new_images = sum(1 for p in manifest if p.startswith(newer))
    new_images += _topped_up(data_root, span_window, state, manifest, newer)
    return NewData(f'span-{spans[-1]}', new_images, manifest, spans[-1])
  new_images = sum(1 for p, sig in manifest.items()
                   if state.manifest.get(p) != sig)
  if not new_images:
    return NewData('', 0, manifest, 0)
  # The ExampleGen's own fingerprint of the files a run reads.
  fingerprint = data_layout.resolve(data_root).fingerprint()
  return NewData(f'files-{fingerprint[:16]}', new_images, manifest, 0)


def _topped_up(data_root: str, span_window: int,
               state: state_lib.RetrainState, manifest: Dict[str, str],
               newer: Tuple[str, ...]) -> int:
  """Files added to or changed in spans already handled (pushed, refused,
  given up on) that a run reads: new data too. Those of spans outside the
  window are not, and the log says so."""
  changed = {p for p, sig in manifest.items()
             if not p.startswith(newer) and state.manifest.get(p) != sig}
  if not changed:
    return 0
  plan = data_layout.resolve(data_root, span_window)
  read = changed & {f.relative_path for split in plan.files.values()
                    for f in split}
  if len(read) < len(changed):
    _log.warning('%d files added or changed in spans that a run with '
                 '--span-window %d does not read: not new data',
                 len(changed) - len(read), span_window)
  return len(read)


def served_class_names(config: PipelineConfig) -> Optional[List[str]]:
  version_dir = model_versions.latest_version_dir(config.model_base_path)
  if version_dir is None:
    return None
  from imgcls.contract import saved_model
  return saved_model.SavedClassifier(version_dir).class_names


def label_change(config: PipelineConfig) -> Optional[str]:
  """Why the data's classes cannot replace the served model's, or None."""
  served = served_class_names(config)
  if served is None:
    return None
  found = data_layout.resolve(config.data_root,
                              config.example_gen.span_window).class_names
  added = sorted(set(found) - set(served))
  missing = sorted(set(served) - set(found))
  if not (added or missing):
    return None
  changes = ([f'new classes {added}'] if added else []) + (
      [f'classes no longer present {missing}'] if missing else [])
  return (f'{" and ".join(changes)} against the served model '
          f'{config.model_name} (classes {served}). Clients expect the '
          'served classes, so nothing was trained. To publish the new label '
          'set deliberately, run `imgcls run --no-baseline ...` and update '
          'the clients.')


def tick(options: RetrainOptions,
         run_pipeline: Optional[Callable[[PipelineConfig], object]] = None
        ) -> Optional[Attempt]:
  """One round: returns the attempt it made, followed or closed, or None if
  idle."""
  config = options.pipeline
  state = state_lib.load(config.pipeline_root)
  new = detect(config.data_root, state, config.example_gen.span_window)
  current = state.current()
  if current and current.outcome == Outcome.SUBMITTED:
    current = _follow(options, state, current, new)
    if current.outcome not in state_lib.RETRIABLE:
      return current
  attempt = _next_attempt(options, state, new)
  if attempt is None:
    return None
  if attempt.attempts > options.max_tries:
    return _give_up(config, state, attempt, current, new)
  options = dataclasses.replace(options, pipeline=person.answered_config(
      config, attempt, current if attempt.answer else None))
  refusal = (label_change(options.pipeline)
             if options.pipeline.compare_with_baseline else None)
  if refusal:
    attempt.outcome, attempt.detail = Outcome.REFUSED, refusal
    attempt.refused_for = state_lib.REFUSED_CLASSES
    _log.error('refused %s: %s', new.data_key, refusal)
    return _close(config, state, attempt, new)
  resumed = current if current and attempt.attempts > 1 else None
  if options.kfp:
    return _start_on_kfp(options, state, attempt, resumed)
  return _run_here(options, state, attempt, new, run_pipeline)


def _next_attempt(options: RetrainOptions, state: state_lib.RetrainState,
                  new: NewData) -> Optional[Attempt]:
  """A person's answer to the closed attempt, the unfinished attempt
  resumed, an attempt for new data, or None."""
  config, current = options.pipeline, state.current()
  answer = person.answer_of(state, config, options.retry)
  if options.retry and answer is None and (
      current is None or current.outcome not in state_lib.RETRIABLE):
    raise UserError('--retry: nothing was given up or rolled back '
                    f'(the last attempt: {_summary(current)})')
  if answer:
    _log.warning('%s: %s answered with %s', current.data_key,
                 current.outcome, answer)
    return Attempt(
        data_key=new.data_key if new.new_images else current.data_key,
        outcome=Outcome.RUNNING, answer=answer,
        new_images=new.new_images or current.new_images)
  # Not closed, and no other data since: the same data, once more.
  if (current is not None and current.outcome not in state_lib.FINAL and
      (current.data_key == new.data_key or not new.new_images)):
    return Attempt(data_key=current.data_key, outcome=Outcome.RUNNING,
                   attempts=current.attempts + 1, answer=current.answer,
                   new_images=current.new_images)
  if not _enough_new_data(options, new):
    return None
  return Attempt(data_key=new.data_key, outcome=Outcome.RUNNING,
                 new_images=new.new_images)


def _summary(attempt: Optional[Attempt]) -> str:
  if attempt is None:
    return 'none'
  return f'{attempt.data_key} {attempt.outcome}'


def _enough_new_data(options: RetrainOptions, new: NewData) -> bool:
  if not new.new_images:
    _log.info('no new data in %s', options.pipeline.data_root)
    return False
  if new.new_images < options.min_new_images:
    _log.warning('%d new images in %s, fewer than --min-new-images %d: '
                 'waiting for more', new.new_images, options.pipeline.data_root,
                 options.min_new_images)
    return False
  return True


def _give_up(config: PipelineConfig, state: state_lib.RetrainState,
             attempt: Attempt, current: Attempt, new: NewData) -> Attempt:
  attempt.attempts -= 1
  attempt.outcome = Outcome.GAVE_UP
  attempt.detail = f'failed {attempt.attempts} times; last: {current.detail}'
  _log.error('giving up on %s: %s', new.data_key, attempt.detail)
  return _close(config, state, attempt, new)


def _follow(options: RetrainOptions, state: state_lib.RetrainState,
            current: Attempt, new: NewData) -> Attempt:
  """The submitted run's state, recorded; closed when the run ended for good."""
  if options.kfp is None:
    raise UserError(f'{current.data_key} is being retrained by KFP run '
                    f'{current.kfp_run_id}: pass --kfp-host to follow it')
  followed = kfp_runs.follow(options.kfp, options.pipeline, current)
  if followed.outcome == Outcome.SUBMITTED:
    _log.warning('%s: KFP run %s is still running', current.data_key,
                 current.kfp_run_id)
    return followed
  if followed.outcome in state_lib.FINAL:
    # The data of the run, not any that landed since, is what was handled.
    new = dataclasses.replace(new, latest_span=_span_of(followed.data_key,
                                                        new.latest_span))
    return _close(options.pipeline, state, followed, new)
  _log.error('%s: %s', followed.data_key, followed.detail)
  state_lib.record(options.pipeline.pipeline_root, state, followed)
  return followed


def _span_of(data_key: str, default: int) -> int:
  prefix = 'span-'
  return int(data_key[len(prefix):]) if data_key.startswith(prefix) else default


def _start_on_kfp(options: RetrainOptions, state: state_lib.RetrainState,
                  attempt: Attempt, previous: Optional[Attempt]) -> Attempt:
  """Submits (or retries) the run; later ticks follow it."""
  started = kfp_runs.start(options.kfp, options.pipeline, attempt, previous)
  if started.outcome != Outcome.SUBMITTED:
    _log.warning('%s: %s', attempt.data_key, started.detail)
    return started
  state_lib.record(options.pipeline.pipeline_root, state, started)
  _log.warning('%s: submitted %s (attempt %d)', started.data_key,
               started.detail, started.attempts)
  return started


def _run_here(options: RetrainOptions, state: state_lib.RetrainState,
              attempt: Attempt, new: NewData, run_pipeline) -> Attempt:
  config = options.pipeline
  state_lib.record(config.pipeline_root, state, attempt)
  _log.warning('retraining on %s (%d new images, attempt %d)', new.data_key,
               attempt.new_images, attempt.attempts)
  try:
    _run_locally(config, attempt, run_pipeline)
  except Exception as e:  # retried next tick
    attempt.outcome, attempt.detail = Outcome.FAILED, f'{type(e).__name__}: {e}'
    _log.error('run for %s failed (attempt %d of %d): %s', new.data_key,
               attempt.attempts, options.max_tries, attempt.detail)
    state_lib.record(config.pipeline_root, state, attempt)
    return attempt
  return _close(config, state, attempt, new)


def _run_locally(config: PipelineConfig, attempt: Attempt,
                 run_pipeline) -> None:
  """Runs the pipeline with LocalDagRunner and fills in the outcome."""
  if run_pipeline is None:
    from imgcls.pipeline import local
    run_pipeline = local.run
  result = run_pipeline(config)
  if result.data_refused:
    from imgcls.components.data_validation import component
    attempt.outcome = Outcome.REFUSED
    attempt.detail = 'data anomalies, nothing trained: ' + '; '.join(
        component.anomaly_lines(result.data_anomalies))
  elif result.pushed_version:
    attempt.outcome, attempt.version = Outcome.PUSHED, result.pushed_version
    attempt.detail = result.pushed_destination
    _verify_push(config, result, attempt)
  elif result.already_published:
    attempt.outcome = Outcome.ALREADY_PUBLISHED
    attempt.version = result.already_published
  elif result.contract_passed is False:
    attempt.outcome = Outcome.NOT_BLESSED
    attempt.detail = f'contract check: {result.contract_reason}'
  else:
    attempt.outcome, attempt.detail = (Outcome.NOT_BLESSED,
                                       result.blessing_reason)


def _verify_push(config: PipelineConfig, result, attempt: Attempt) -> None:
  """With --verify-serving, a push that the server did not serve as the
  model answers in-process has been rolled back; the attempt says so."""
  from imgcls.clients.verify import verify_run
  verdict = verify_run(config, result)
  if verdict and not verdict.passed:
    attempt.outcome = Outcome.ROLLED_BACK
    attempt.detail = ('pushed, failed verification, ' + (
        f'rolled back as version {verdict.rolled_back_as}'
        if verdict.rolled_back_as is not None else
        f'NOT rolled back ({verdict.not_rolled_back})') +
                      f': {verdict.problem}')


def _close(config: PipelineConfig, state: state_lib.RetrainState,
           attempt: Attempt, new: NewData) -> Attempt:
  """Records a final outcome: this data is handled and never triggered again,
  unless a person answers (retrain.person)."""
  if attempt.outcome == Outcome.REFUSED and not attempt.refused_for:
    attempt.refused_for = state_lib.REFUSED_ANOMALIES
    attempt.schema_digest = person.schema_digest(config)
  state.manifest = new.manifest
  state.last_span = new.latest_span
  state_lib.record(config.pipeline_root, state, attempt)
  _log.warning('%s: %s %s %s', new.data_key, attempt.outcome,
               attempt.version or '', attempt.detail)
  return attempt


def watch(options: RetrainOptions, interval_s: float,
          max_ticks: Optional[int] = None,
          on_tick: Callable[[Optional[Attempt]], None] = lambda _: None
         ) -> None:
  """Ticks every interval_s seconds, holding the watcher lock throughout;
  `on_tick` gets each tick's attempt (None when idle)."""
  with state_lib.exclusive(options.pipeline.pipeline_root):
    ticks = 0
    while max_ticks is None or ticks < max_ticks:
      on_tick(tick(options))
      ticks += 1
      if max_ticks is None or ticks < max_ticks:
        time.sleep(interval_s)
