"""3. Whole pipeline: `imgcls run` against a plain script doing the training.

Both are timed as commands, from process start to exit, on the same class
folders for the same epochs: `imgcls run` (ExampleGen -> Trainer ->
Evaluator -> contract check -> Pusher, then the run report) in a fresh
pipeline root, and bench.plain_train (load, fit, save). The time of each
component comes from MLMD, to show where the difference goes.
"""
import collections
import os
import shutil
from typing import Dict

from bench import common
from bench import data
from pipeline import results

NAME = 'pipeline'
TITLE = 'Whole pipeline: imgcls run'
TARGET = 1.5  # imgcls run at most 1.5x the plain script
_PLAIN = 'plain script'


def component_seconds(pipeline_root: str) -> Dict[str, float]:
  """Seconds each component of the latest run took, from MLMD's
  execution timestamps (registered at start, updated at the end)."""
  store = results.open_store(pipeline_root)
  run = store.get_context_by_type_and_name('pipeline_run',
                                           results.run_ids(store)[-1])
  types = {t.id: t.name.rpartition('.')[2] for t in store.get_execution_types()}
  seconds = collections.Counter()
  for execution in store.get_executions_by_context(run.id):
    seconds[types[execution.type_id]] += (
        execution.last_update_time_since_epoch -
        execution.create_time_since_epoch) / 1000
  return dict(seconds)


def run(session: common.Session) -> common.Result:
  sizes = (300,) if session.quick else (7_000, 70_000)
  epochs = 1 if session.quick else 3
  measured = {}
  for n in sizes:
    root = data.dataset(session, n)
    out = os.path.join(session.work_dir, NAME, str(n))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    pipeline_root = os.path.join(out, 'pipeline')
    # min-accuracy 0: the run goes through to the Pusher whatever it learns.
    pipeline_seconds = common.run_command(
        ['imgcls.cli', 'run', '--data-root', root, '--serving-dir',
         os.path.join(out, 'serving'), '--pipeline-root', pipeline_root,
         '--epochs', str(epochs), '--min-accuracy', '0'],
        os.path.join(out, 'imgcls-run.log'))
    plain_seconds = common.run_command(
        ['bench.plain_train', '--data-root', root, '--out',
         os.path.join(out, 'plain-model'), '--epochs', str(epochs)],
        os.path.join(out, 'plain.log'))
    measured[n] = (pipeline_seconds, plain_seconds,
                   component_seconds(pipeline_root))
  return _result(session, epochs, measured)


def _result(session, epochs, measured) -> common.Result:
  figures, notes = [], []
  for n, (pipeline_seconds, plain_seconds, _) in measured.items():
    ratio = pipeline_seconds / plain_seconds
    met = ratio <= TARGET
    figures.append(
        common.Figure(f'wall time, {n:,} images', pipeline_seconds, 's',
                      _PLAIN, plain_seconds,
                      f'<= {TARGET:g}x the plain script', met))
    if not met:
      notes.append(
          f'Not met at {n:,} images: {ratio:.2f}x. ' + _why(
              pipeline_seconds, plain_seconds, measured[n][2]))
  components = sorted({c for *_, seconds in measured.values()
                       for c in seconds})
  details = [['', *(f'{n:,} images (s)' for n in measured)]]
  details.append(['`imgcls run`', *(f'{m[0]:.1f}' for m in measured.values())])
  details += [[f'↳ {c}',
               *(f'{m[2].get(c, 0):.1f}' for m in measured.values())]
              for c in components]
  details.append(['↳ outside components (start-up, imports, '
                  'Trainer module packaging, report)',
                  *(f'{m[0] - sum(m[2].values()):.1f}'
                    for m in measured.values())])
  details.append([_PLAIN, *(f'{m[1]:.1f}' for m in measured.values())])
  details.append(['ratio', *(f'{m[0] / m[1]:.2f}x' for m in measured.values())])
  return common.Result(
      name=NAME, title=TITLE,
      setup=(f'{data.describe(session)} class folders, LeNet, {epochs} '
             f'epoch(s), batch 128, both as commands timed from start to '
             f'exit. `imgcls run` starts from an empty pipeline root (no '
             f'cache) and ends with its report; component times are MLMD\'s '
             f'execution timestamps.'),
      figures=figures, details=details, notes=notes,
      machine=common.machine(), quick=session.quick)


def _why(pipeline_seconds, plain_seconds, components) -> str:
  """Where the extra time went, largest first."""
  extra = {
      name: seconds for name, seconds in components.items()
      if name != 'Trainer'
  }
  extra['outside components'] = pipeline_seconds - sum(components.values())
  parts = ', '.join(f'{name} {seconds:.0f} s'
                    for name, seconds in sorted(extra.items(),
                                                key=lambda kv: -kv[1]))
  return (f'The Trainer itself took {components.get("Trainer", 0):.0f} s '
          f'against the plain script\'s {plain_seconds:.0f} s in all; the '
          f'rest is work the script does not do: {parts}.')
