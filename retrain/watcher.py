"""Retraining when new data lands: detect, decide, trigger, remember.

New data is a span newer than the last one handled (`data_root/span-N/`), or,
without spans, image files added or changed since the last handled scan.
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
"""
import dataclasses
import hashlib
import logging
import os
import time
from typing import Callable, Dict, List, Optional

from imagedata import data_layout
from serving_dir import versions as model_versions
from contract.errors import UserError
from pipeline.config import PipelineConfig
from pipeline.kubeflow_config import KubeflowOptions
from retrain import state as state_lib

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RetrainOptions:
  pipeline: PipelineConfig
  min_new_images: int = 1
  max_tries: int = 3
  kfp_host: Optional[str] = None
  kfp_options: KubeflowOptions = KubeflowOptions()


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
  manifest = {}
  for root in roots:
    for split in data_layout.SPLITS:
      split_dir = os.path.join(root, split)
      if not os.path.isdir(split_dir):
        continue
      for f in data_layout.files_of_split(data_root, split_dir):
        stat = os.stat(f.path)
        manifest[f.relative_path] = f'{stat.st_size}:{stat.st_mtime_ns}'
  return manifest


def detect(data_root: str, state: state_lib.RetrainState) -> NewData:
  if not os.path.isdir(data_root):
    raise UserError(f'{data_root}: no such data directory')
  manifest = scan(data_root)
  spans = data_layout.span_numbers(data_root)
  if spans:
    newer = [f'span-{s}{os.sep}' for s in spans if s > state.last_span]
    new_images = sum(1 for p in manifest if p.startswith(tuple(newer))
                    ) if newer else 0
    return NewData(f'span-{spans[-1]}', new_images, manifest, spans[-1])
  new_images = sum(1 for p, sig in manifest.items()
                   if state.manifest.get(p) != sig)
  digest = hashlib.sha256(repr(sorted(manifest.items())).encode()).hexdigest()
  return NewData(f'files-{digest[:16]}', new_images, manifest, 0)


def served_class_names(config: PipelineConfig) -> Optional[List[str]]:
  version_dir = model_versions.latest_version_dir(config.model_base_path)
  if version_dir is None:
    return None
  from contract import saved_model  # pylint: disable=g-import-not-at-top
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
        ) -> Optional[state_lib.Attempt]:
  """One round: returns the attempt it made or closed, or None if idle."""
  config = options.pipeline
  state = state_lib.load(config.pipeline_root)
  new = detect(config.data_root, state)
  current = state.current()
  resuming = (current is not None and current.data_key == new.data_key and
              current.outcome not in state_lib.FINAL_OUTCOMES)
  if not resuming:
    if not new.new_images:
      _log.info('no new data in %s', config.data_root)
      return None
    if new.new_images < options.min_new_images:
      _log.warning('%d new images in %s, fewer than --min-new-images %d: '
                   'waiting for more', new.new_images, config.data_root,
                   options.min_new_images)
      return None
  attempt = state_lib.Attempt(
      data_key=new.data_key, outcome=state_lib.RUNNING,
      attempts=current.attempts + 1 if resuming else 1,
      new_images=current.new_images if resuming else new.new_images)
  if attempt.attempts > options.max_tries:
    attempt.attempts -= 1
    attempt.outcome = state_lib.GAVE_UP
    attempt.detail = (f'failed {attempt.attempts} times; last: '
                      f'{current.detail}')
    _log.error('giving up on %s: %s', new.data_key, attempt.detail)
    return _close(config, state, attempt, new)
  refusal = label_change(config)
  if refusal:
    attempt.outcome, attempt.detail = state_lib.REFUSED, refusal
    _log.error('refused %s: %s', new.data_key, refusal)
    return _close(config, state, attempt, new)
  state_lib.record(config.pipeline_root, state, attempt)
  _log.warning('retraining on %s (%d new images, attempt %d)', new.data_key,
               attempt.new_images, attempt.attempts)
  try:
    _trigger(options, attempt, run_pipeline)
  except Exception as e:  # pylint: disable=broad-except  (retried next tick)
    attempt.outcome, attempt.detail = state_lib.FAILED, f'{type(e).__name__}: {e}'
    _log.error('run for %s failed (attempt %d of %d): %s', new.data_key,
               attempt.attempts, options.max_tries, attempt.detail)
    state_lib.record(config.pipeline_root, state, attempt)
    return attempt
  return _close(config, state, attempt, new)


def _trigger(options: RetrainOptions, attempt: state_lib.Attempt,
             run_pipeline) -> None:
  """Runs the pipeline and fills in the attempt's outcome."""
  if options.kfp_host:
    from pipeline import kubeflow  # pylint: disable=g-import-not-at-top
    run_id = kubeflow.submit_pipeline(options.pipeline, options.kfp_host,
                                      options.kfp_options)
    attempt.outcome, attempt.detail = state_lib.SUBMITTED, f'KFP run {run_id}'
    return
  if run_pipeline is None:
    from pipeline import local  # pylint: disable=g-import-not-at-top
    run_pipeline = local.run
  result = run_pipeline(options.pipeline)
  if result.pushed_version:
    attempt.outcome, attempt.version = state_lib.PUSHED, result.pushed_version
    attempt.detail = result.pushed_destination
  elif result.already_published:
    attempt.outcome = state_lib.ALREADY_PUBLISHED
    attempt.version = result.already_published
  elif result.contract_passed is False:
    attempt.outcome = state_lib.NOT_BLESSED
    attempt.detail = f'contract check: {result.contract_reason}'
  else:
    attempt.outcome, attempt.detail = (state_lib.NOT_BLESSED,
                                       result.blessing_reason)


def _close(config: PipelineConfig, state: state_lib.RetrainState,
           attempt: state_lib.Attempt, new: NewData) -> state_lib.Attempt:
  """Records a final outcome: this data is handled and never triggered again."""
  state.manifest = new.manifest
  state.last_span = new.latest_span
  state_lib.record(config.pipeline_root, state, attempt)
  _log.warning('%s: %s %s %s', new.data_key, attempt.outcome,
               attempt.version or '', attempt.detail)
  return attempt


def watch(options: RetrainOptions, interval_s: float,
          max_ticks: Optional[int] = None) -> None:
  """Ticks every interval_s seconds, holding the watcher lock throughout."""
  with state_lib.exclusive(options.pipeline.pipeline_root):
    ticks = 0
    while max_ticks is None or ticks < max_ticks:
      tick(options)
      ticks += 1
      if max_ticks is None or ticks < max_ticks:
        time.sleep(interval_s)
