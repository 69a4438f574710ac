"""3. Whole pipeline: `imgcls run` against a plain script doing the training.

Both are timed as commands, from process start to exit, on the same class
folders for the same epochs: `imgcls run` (ExampleGen -> statistics, schema
and validation -> Trainer -> Evaluator -> contract check -> Pusher, then the
run report) in a fresh pipeline root, and bench.plain_train (load, fit,
save). The time of each component, and of what the command does around them,
comes from bench.profile_run, to show where the difference goes. The
start-up before the first component is set against its own floor, importing
TensorFlow and TFX (bench.imports), measured in the same run.
"""
import os
import shutil

from bench import common, data, profile_run
from imgcls.imagedata import data_layout, image_header, pixel_statistics

NAME = 'pipeline'
TITLE = 'Whole pipeline: imgcls run'
# imgcls run at most this many times the plain script, by data size: what
# the pipeline adds is mostly a fixed cost, so the bound is looser when small.
TARGETS = {7_000: 1.8, 70_000: 1.3}
# Data validation's components (issue 15): at most this share of the whole
# run at 70,000 images.
VALIDATION = ('StatisticsGen', 'CuratedSchemaGen', 'DataValidator',
              'DataGate')
VALIDATION_TARGET = 0.10
# The pixel statistics the ExampleGen decodes a sample for (issue 36): at
# most this share of the whole run at the largest size. Their counting in
# StatisticsGen is in data validation's figure.
PIXELS_TARGET = 0.03
# The start-up over importing TensorFlow and TFX, at most: building the
# pipeline, opening MLMD.
STARTUP_TARGET = 1.5
_PLAIN = 'plain script'


# bench.profile_run's parts of a run, as the doc names them.
_BEFORE = ('start-up: interpreter, imports, pipeline build (before the first '
           'component)')
_PART_NAMES = {
    'startup': _BEFORE,
    'orchestration': 'orchestration between components',
    'report': 'run summary and report (after the last component)',
    'exit': 'exit (interpreter teardown)',
}
# What each part spends its time on, by a cProfile of a 7,000-image run
# (`python -m bench.profile_run --profile-dir DIR -- run ...`, one dump per
# part: shares, not seconds, since cProfile slows Python code several times
# over).
_INSIDE = {
    _BEFORE: 'imports, most of it: TensorFlow, tfx.components (its package '
             'imports every standard component, TFMA and TFDV with them), '
             'Beam; about 9,500 modules. The rest: the pipeline built and '
             'compiled to IR, MLMD opened (under 0.2 s each).',
    'ImageExampleGen': 'listing, checking and writing the images (grows with '
                       'the data; the driver\'s second listing is issue '
                       '23\'s); Beam\'s pipeline construction.',
    'StatisticsGen': 'TFDV\'s Beam pipeline: its construction (Beam\'s '
                     'DoFn signature inspection, PipelineOptions parsed '
                     'again at each view_as) is a third under cProfile; '
                     'the statistics of the allowlisted features.',
    'Trainer': 'fit (grows with the data; on CPUs the augmentation runs in '
               'tf.data\'s parallel map, beside the training step), '
               'tf.function tracing, the SavedModel export with three '
               'signatures.',
    'ContractCheck': 'loading the SavedModel (kept for the report: the '
                     'same artifact), the sample examples through its '
                     'signatures.',
    'GatedEvaluator': 'TFMA\'s Beam pipeline construction (about 1,160 '
                      'PipelineOptions parsed, 28,000 DoFn signatures '
                      'inspected), the SavedModel loaded into a graph, the '
                      'metrics over the test split (per example, in '
                      'Python: grows with it); per-class accuracy is read '
                      'off the confusion matrix, not a slice per label.',
    'orchestration between components': 'MLMD registration, cache lookups '
                                        'and publishing; the console\'s '
                                        'line per component.',
    'run summary and report (after the last component)':
        'predicting test images until the 32 misclassified ones it shows '
        '(the totals come from the Evaluator\'s confusion matrix), drawing '
        'five figures with matplotlib, the two overlapping; the model the '
        'contract check loaded is reused.',
    'exit (interpreter teardown)': 'finalizing the interpreter: module '
                                   'teardown, atexit handlers; its last '
                                   'garbage collection is skipped by '
                                   'gc.freeze at the console script\'s end '
                                   '(imgcls.cli.exit_process).',
}


# What is left, with every component and check kept (the condition);
# from the profiles and `python -X importtime`.
_LEFT = (
    'Every component and check stays, so what is left is in the libraries: '
    '(1) imports: `tfx.components`\' package imports all sixteen standard '
    'components, the Tuner\'s keras_tuner with Keras 3 (0.8 s), the '
    'InfraValidator\'s Kubernetes client (0.15 s) and tf.Transform among '
    'them, and `apache_beam.io` the BigQuery client with IPython (0.3 s); '
    'skipping them means replacing TFX\'s package module at import time, '
    'and repeating what it does besides importing (it sets EvalConfig and '
    'eight other config names on tensorflow_model_analysis, which '
    'tfx.components.evaluator needs): not done, as it would tie the run to '
    'TFX 1.21\'s internals. (2) Beam\'s pipeline construction in TFMA and '
    'TFDV: '
    'PipelineOptions parsed again at every view_as, every DoFn\'s '
    'signature inspected. (3) The Trainer\'s first epoch decodes each '
    'image through the serving preprocessing (0.17 ms an image: about 40 '
    'small TensorFlow ops, the header check, the channel conversion and '
    'the resize each a small share of it), where the script decodes with '
    'PIL once, 0.5 s for 7,000 PNGs.')
_PLAIN_STALL = (
    'The plain script\'s stall: in most of its runs, `model.fit` returns '
    'about 4 s after its last epoch ends (between tf_keras\'s on_train_end '
    'and the return, outside any Python function cProfile sees), so its '
    'time is bimodal, 4 s apart. It runs twice a round and the floor is '
    'its fastest run, without the stall.')


def run(session: common.Session) -> common.Result:
  sizes = (300,) if session.quick else (7_000, 70_000)
  epochs = 1 if session.quick else 3
  rounds = session.rounds or (1 if session.quick else 3)
  measured = {}
  for n in sizes:
    root = data.dataset(session, n)
    out = os.path.join(session.work_dir, NAME, str(n))
    # Taking turns; the best of the rounds, since interference only ever
    # slows a command down.
    runs, plain = [], []
    for _ in range(rounds):
      runs.append(_pipeline(root, out, epochs))
      # Twice a round (_PLAIN_STALL): a floor slowed by the stall would
      # flatter the pipeline.
      plain += [_plain(root, out, epochs) for _ in range(2)]
    pipeline_seconds, by_part = min(runs, key=lambda run: run[0])
    pixels = min(_pixel_statistics_seconds(root) for _ in range(rounds))
    measured[n] = (pipeline_seconds, min(plain), by_part, pixels)
  imports = min(common.run_command(['bench.imports'], os.path.join(
      session.work_dir, NAME, 'imports.log')) for _ in range(rounds))
  return _result(session, epochs, rounds, measured, imports)


def _pipeline(root: str, out: str, epochs: int):
  """(seconds of `imgcls run` from an empty pipeline root, by part): timed
  by bench.profile_run without its profiler, which adds two wrapped
  methods to the run."""
  shutil.rmtree(out, ignore_errors=True)
  os.makedirs(out)
  # min-accuracy 0: the run goes through to the Pusher whatever it learns.
  seconds, walls = profile_run.profile(
      ['run', '--data-root', root, '--serving-dir',
       os.path.join(out, 'serving'), '--pipeline-root',
       os.path.join(out, 'pipeline'), '--epochs', str(epochs),
       '--min-accuracy', '0'],
      os.path.join(out, 'parts'), os.path.join(out, 'imgcls-run.log'),
      with_cprofile=False)
  # The components in run order, then what the run does around them.
  order = sorted(walls, key=lambda part: list(_PART_NAMES)[1:].index(part)
                 if part in list(_PART_NAMES)[1:] else -1)
  return seconds, {_PART_NAMES.get(part, part): walls[part] for part in order}


def _pixel_statistics_seconds(root: str) -> float:
  """The ExampleGen's work for pixel statistics on `root`: its sample of
  each split decoded and measured (imagedata.pixel_statistics), here in one
  thread, after the files are read, which the ExampleGen does anyway."""
  sample = []
  for files in data_layout.resolve(root).files.values():
    for f, chosen in zip(files, pixel_statistics.sampled(
        [f.class_name for f in files])):
      if chosen:
        with open(f.path, 'rb') as handle:
          encoded = handle.read()
        sample.append((encoded, image_header.read_header(encoded).format))
  with common.Timer() as timer:
    for encoded, image_format in sample:
      pixel_statistics.of_image(encoded, image_format)
  return timer.seconds


def _plain(root: str, out: str, epochs: int) -> float:
  return common.run_command(
      ['bench.plain_train', '--data-root', root, '--out',
       os.path.join(out, 'plain-model'), '--epochs', str(epochs)],
      os.path.join(out, 'plain.log'))


def _result(session, epochs, rounds, measured, imports) -> common.Result:
  figures, notes = [], []
  for n, (pipeline_seconds, plain_seconds, parts, _) in measured.items():
    ratio = pipeline_seconds / plain_seconds
    target = TARGETS.get(n, max(TARGETS.values()))
    met = ratio <= target
    figures.append(
        common.Figure(f'wall time, {n:,} images', pipeline_seconds, 's',
                      _PLAIN, plain_seconds,
                      f'<= {target:g}x the plain script', met))
    if not met:
      notes.append(
          f'Not met at {n:,} images: {ratio:.2f}x. ' +
          _why(plain_seconds, parts) + ' ' +
          _to_meet(pipeline_seconds, plain_seconds, target, parts))
  if notes:
    notes.append(_LEFT)
  if len(measured) > 1:
    notes.append(
        'Most of the difference is a fixed cost, so the ratio falls as the '
        'data grows: ' + ', '.join(f'{m[0] / m[1]:.2f}x at {n:,} images'
                                   for n, m in measured.items()) + '.')
  notes.append(_PLAIN_STALL)
  for n, (pipeline_seconds, _, parts, pixels) in measured.items():
    validation = sum(parts.get(name, 0) for name in VALIDATION)
    figures.append(_share_of_run(
        f'data validation, {n:,} images', validation, pipeline_seconds,
        VALIDATION_TARGET if n == max(measured) else None))
    figures.append(_share_of_run(
        f'pixel statistics in the ExampleGen, {n:,} images', pixels,
        pipeline_seconds, PIXELS_TARGET if n == max(measured) else None))
  startup = min(m[2][_BEFORE] for m in measured.values())
  figures.append(
      common.Figure('start-up before the first component', startup, 's',
                    'importing TensorFlow and TFX', imports,
                    f'<= {STARTUP_TARGET:g}x the imports',
                    startup <= STARTUP_TARGET * imports))
  parts = next(iter(measured.values()))[2]  # the same parts at every size
  details = [['', *(f'{n:,} images (s)' for n in measured),
              'where it goes (bench.profile_run)']]
  details.append(['`imgcls run`', *(f'{m[0]:.1f}' for m in measured.values()),
                  ''])
  details += [[f'↳ {part}', *(f'{m[2].get(part, 0):.1f}'
                              for m in measured.values()),
               _INSIDE.get(part, '')] for part in parts]
  details.append([_PLAIN, *(f'{m[1]:.1f}' for m in measured.values()), ''])
  details.append(['ratio', *(f'{m[0] / m[1]:.2f}x' for m in measured.values()),
                  ''])
  return common.Result(
      name=NAME, title=TITLE,
      setup=(f'{data.describe(session)} class folders, LeNet, {epochs} '
             f'epoch(s), batch 128, both as commands timed from start to '
             f'exit: `imgcls run` the best of {rounds}, the plain script '
             f'the best of {2 * rounds} (see its stall below). `imgcls run` '
             f'starts from an empty '
             f'pipeline root (no cache) and ends with its report; its parts '
             f'are timed in the process (bench.profile_run --no-profile). '
             f'The pixel statistics: the ExampleGen\'s sample of each split '
             f'decoded and measured again here, in one thread, the best of '
             f'{rounds}; their counting in StatisticsGen is in data '
             f'validation\'s seconds.'),
      figures=figures, details=details, notes=notes, quick=session.quick)


def _share_of_run(name: str, seconds: float, run_seconds: float,
                  target) -> common.Figure:
  """A part of the run against the whole; `target`: its largest share, or
  None for a figure without one."""
  return common.Figure(
      name, seconds, 's', 'the whole run', run_seconds,
      f'<= {target:.0%} of the run' if target is not None else '',
      seconds / run_seconds <= target if target is not None else None)


def _why(plain_seconds, parts) -> str:
  """Where the extra time went, largest first (half seconds and up)."""
  trainer = parts.get('Trainer', 0)
  extra = sorted(((seconds, name) for name, seconds in parts.items()
                  if name != 'Trainer' and seconds >= 0.5), reverse=True)
  why = (f'The Trainer itself took {trainer:.0f} s against the plain '
         f'script\'s {plain_seconds:.0f} s in all')
  if trainer > plain_seconds:
    why += (' (it also reads and decodes the TFRecords in its first epoch, '
            'see benchmark 2, and writes TensorBoard logs)')
  return (why + '; the rest is work the script does not do: ' +
          ', '.join(f'{name} {seconds:.0f} s' for seconds, name in extra) +
          '.')


def _to_meet(pipeline_seconds, plain_seconds, target, parts) -> str:
  """What meeting the target would take, against the fixed costs left."""
  over = pipeline_seconds - target * plain_seconds
  fixed = sum(seconds for name, seconds in parts.items()
              if name != 'Trainer')
  trainer_over = parts.get('Trainer', 0) - plain_seconds
  return (f'Meeting {target:g}x takes {over:.1f} s less: '
          f'{over / fixed:.0%} of the {fixed:.0f} s the run spends outside '
          f'the Trainer' +
          (f', or the Trainer\'s {trainer_over:.0f} s over the whole plain '
           f'script' if trainer_over > 0 else '') + '.')
