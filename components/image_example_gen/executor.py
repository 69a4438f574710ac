"""The Beam executor: image files -> tf.Examples, with a report of what was read.

Each example holds the file's bytes exactly as on disk (the model decodes
them, as it will when served), the label, the label name and the path.
Unreadable files are skipped and listed; the run fails when a class ends up
without training images or when too many files are bad.

Next to the splits, the Examples artifact gets `dataset_info.json`: the label
vocabulary (sorted class names of the whole dataset), counts and skipped
files. The Trainer and the reports read it; the same facts are recorded as
custom properties of the artifact in MLMD.
"""
import collections
import json
import logging
import os
from typing import Any, Dict, Iterable, List, Sequence

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.types import artifact_utils
from tfx.types import standard_component_specs

from components import class_folders
from components import data_layout
from components import example_format
from components.image_example_gen import options as options_lib
from imgcls.errors import UserError

DATASET_INFO_FILE = 'dataset_info.json'
_REPORT_DIR = '_reports'  # per-chunk reports, merged into DATASET_INFO_FILE
_REPORT_TAG = 'report'
# Files per Beam element: large enough that Beam's per-element cost is small
# next to the work, small enough to spread over workers.
_CHUNK = 500
_LOGGED_SKIPS = 50


def read_dataset_info(examples_uri: str) -> Dict[str, Any]:
  with tf.io.gfile.GFile(os.path.join(examples_uri, DATASET_INFO_FILE)) as f:
    return json.load(f)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Reads the layout that components.data_layout resolves."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    options = options_lib.ExampleGenOptions.from_exec_properties(
        exec_properties)
    self._plan = data_layout.resolve(
        exec_properties[standard_component_specs.INPUT_BASE_KEY],
        options.span_window)
    self._report_dir = os.path.join(examples.uri, _REPORT_DIR)
    logging.info('reading %s', data_layout.plan_json(self._plan))
    super().Do(input_dict, output_dict, exec_properties)
    info = self._dataset_info()
    _check(info, options)
    with tf.io.gfile.GFile(os.path.join(examples.uri, DATASET_INFO_FILE),
                           'w') as f:
      json.dump(info, f, indent=1)
    tf.io.gfile.rmtree(self._report_dir)
    _record_on_artifact(examples, info)

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]
                            ) -> Dict[str, beam.pvalue.PCollection]:
    class_index = {n: i for i, n in enumerate(self._plan.class_names)}
    splits = {}
    for split, files in self._plan.files.items():
      chunks = [files[i:i + _CHUNK] for i in range(0, len(files), _CHUNK)]
      converted = (
          pipeline
          | f'ListFiles[{split}]' >> beam.Create(chunks)
          | f'Spread[{split}]' >> beam.Reshuffle()
          | f'ToExamples[{split}]' >> beam.ParDo(
              _ConvertChunk(split, class_index)).with_outputs(
                  _REPORT_TAG, main='examples'))
      _ = (
          converted[_REPORT_TAG]
          | f'ReportToJson[{split}]' >> beam.Map(json.dumps)
          | f'WriteReport[{split}]' >> beam.io.WriteToText(
              os.path.join(self._report_dir, split), file_name_suffix='.jsonl'))
      splits[split] = converted.examples
    return splits

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    raise NotImplementedError('GenerateExamplesByBeam reads the layout itself')

  def _dataset_info(self) -> Dict[str, Any]:
    counts = {s: collections.Counter() for s in data_layout.SPLITS}
    skipped: List[List[str]] = []
    for path in tf.io.gfile.glob(os.path.join(self._report_dir, '*.jsonl*')):
      with tf.io.gfile.GFile(path) as f:
        for line in f:
          report = json.loads(line)
          counts[report['split']].update(report['counts'])
          skipped += report['skipped']
    return {
        **self._plan.summary(),
        'examples': {s: sum(c.values()) for s, c in counts.items()},
        'examples_per_class': {
            s: {n: c[n] for n in self._plan.class_names}
            for s, c in counts.items()
        },
        'skipped': sorted(skipped),
    }


class _ConvertChunk(beam.DoFn):
  """A chunk of files -> serialized Examples, plus one report of the chunk."""

  def __init__(self, split: str, class_index: Dict[str, int]):
    self._split = split
    self._class_index = class_index

  def process(self, files: Sequence[data_layout.ImageFile]) -> Iterable[Any]:
    counts = collections.Counter()
    skipped = []
    for f in files:
      with open(f.path, 'rb') as handle:
        data = handle.read()
      problem = class_folders.image_problem(data)
      if problem:
        skipped.append([f.relative_path, problem])
        continue
      counts[f.class_name] += 1
      yield example_format.make_example(
          data, self._class_index[f.class_name], f.class_name,
          f.relative_path).SerializeToString()
    yield beam.pvalue.TaggedOutput(_REPORT_TAG, {
        'split': self._split,
        'counts': dict(counts),
        'skipped': skipped
    })


def _check(info: Dict[str, Any], options: options_lib.ExampleGenOptions
          ) -> None:
  """Logs what was skipped; fails when the data cannot train a classifier."""
  skipped = info['skipped']
  for path, reason in skipped[:_LOGGED_SKIPS]:
    logging.warning('skipped %s: %s', path, reason)
  if len(skipped) > _LOGGED_SKIPS:
    logging.warning('... and %d more skipped files (see %s)',
                    len(skipped) - _LOGGED_SKIPS, DATASET_INFO_FILE)
  total = sum(info['files'].values())
  if total and len(skipped) / total > options.max_bad_fraction:
    raise UserError(
        f'{len(skipped)} of {total} files ({len(skipped) / total:.1%}) are not '
        f'readable images, more than max_bad_fraction '
        f'{options.max_bad_fraction:.1%}; first: {skipped[0][0]}: '
        f'{skipped[0][1]}')
  empty = [n for n, c in info['examples_per_class'][data_layout.TRAIN].items()
           if c == 0]
  if empty:
    raise UserError(f'{info["data_root"]}: no readable training images for '
                    f'class(es) {empty}')
  if info['examples'][data_layout.TEST] == 0:
    raise UserError('the test split is empty: add a test/<class>/ folder or '
                    'more images')


def _record_on_artifact(examples, info: Dict[str, Any]) -> None:
  examples.set_string_custom_property('class_names',
                                      json.dumps(info['class_names']))
  examples.set_int_custom_property('skipped_files', len(info['skipped']))
  examples.set_string_custom_property('example_counts',
                                      json.dumps(info['examples']))
  examples.set_string_custom_property('train_spans',
                                      json.dumps(info['train_spans']))
  examples.set_string_custom_property('test_source', info['test_source'])
