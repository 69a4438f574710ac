"""The Beam executor: image files -> gzipped TFRecords of tf.Examples.

Each example holds the file's bytes exactly as on disk (the model decodes
them, as it will when served), the label, the label name and the path; the
header's facts, and for a sample of each split the pixel statistics
(imagedata.pixel_statistics), are for data validation.
Unreadable files are skipped and listed; the run fails when a class ends up
without training images or when too many files are bad.

Beam's unit of work is a chunk of files, and each chunk is written as one
TFRecord shard by the worker that read it. TFX's usual path (one Beam element
per example, reshuffled, then Beam's TFRecord sink) costs several times more
per image than reading the files; here Beam only spreads the chunks. The
file list is shuffled (by a hash of each path) before chunking, so the
shards mix the classes as the Trainer's shuffle buffer expects. A retried
chunk rewrites the same shard name, atomically.

Next to the splits, the Examples artifact gets the dataset facts
(imagedata.dataset_facts, `dataset_info.json`): the label vocabulary (sorted
class names of the whole dataset), counts and skipped files. The Trainer and
the reports read them; a summary is recorded as custom properties of the
artifact in MLMD.
"""
import collections
from concurrent import futures
import functools
import hashlib
import json
import logging
import os
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from imgcls.components.image_example_gen import cpu_quota
from imgcls.components.image_example_gen import options as options_lib
from imgcls.contract import names, progress, storage
from imgcls.contract.errors import UserError
from imgcls.imagedata import (
  class_folders,
  data_layout,
  dataset_facts,
  pixel_statistics,
  tf_examples,
)

# Chunk lists and per-shard reports (merged into the dataset facts), removed
# once the splits are written.
_WORK_DIR = '_work'
# Files per shard: large enough that Beam's per-element cost is small next to
# the work, small enough to spread over workers.
_CHUNK = 1000
_LOGGED_SKIPS = 50
# Reader threads per shard: one per CPU of the pod's quota (cpu_quota), given
# files in batches of this many, when the files average this size (a 640x480
# JPEG is ~100 KB).
_BATCH = 16
_THREADED_FILE_BYTES = 16 * 1024
_QUEUED_PER_THREAD = 2  # batches read ahead of the writer, per thread


class Executor(base_beam_executor.BaseBeamExecutor):
  """Reads the layout that imagedata.data_layout resolves."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    options, plan = options_lib.resolve_layout(exec_properties)
    logging.info('reading %s', data_layout.plan_json(plan))
    examples.split_names = artifact_utils.encode_split_names(
        list(data_layout.SPLITS))
    work_dir = os.path.join(examples.uri, _WORK_DIR)
    tf.io.gfile.makedirs(work_dir)
    class_index = {n: i for i, n in enumerate(plan.class_names)}
    with self._make_beam_pipeline() as pipeline:
      for split, files in plan.files.items():
        split_uri = artifact_utils.get_split_uri([examples], split)
        tf.io.gfile.makedirs(split_uri)
        _ = (
            pipeline
            | f'ListChunks[{split}]' >> beam.Create(
                _write_chunks(files, split, work_dir))
            | f'Spread[{split}]' >> beam.Reshuffle()
            | f'WriteShards[{split}]' >> beam.Map(
                _write_shard, split, split_uri, work_dir, class_index,
                options.max_image_pixels))
    facts = _dataset_facts(plan, work_dir)
    _check(facts, options)
    dataset_facts.write(examples.uri, facts)
    tf.io.gfile.rmtree(work_dir)
    examples_utils.set_payload_format(examples,
                                      example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(
        examples,
        write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    _record_on_artifact(examples, facts)


def _write_chunks(files: Sequence[data_layout.ImageFile], split: str,
                  work_dir: str) -> List[Tuple[int, int, str]]:
  """Writes the file lists of the chunks, in a class-mixing order, to
  work_dir, each file with whether it gets pixel statistics; returns
  (index, count, list file) for each.

  Beam's elements are the list files' names: values given to beam.Create are
  pickled and compressed with the pipeline, which for a large dataset costs
  more than reading the images.
  """
  ordered = sorted(
      files, key=lambda f: hashlib.md5(f.relative_path.encode()).digest())
  sampled = pixel_statistics.sampled([f.class_name for f in ordered])
  listed = [(f.path, f.relative_path, f.class_name, s)
            for f, s in zip(ordered, sampled)]
  pieces = [listed[i:i + _CHUNK] for i in range(0, len(listed), _CHUNK)]
  chunks = []
  for index, piece in enumerate(pieces):
    path = os.path.join(work_dir, f'{split}-{index:05d}.files.json')
    _write_json(path, piece)
    chunks.append((index, len(pieces), path))
  return chunks


def _write_shard(chunk: Tuple[int, int, str], split: str, split_uri: str,
                 work_dir: str, class_index: Dict[str, int],
                 max_image_pixels: int) -> None:
  """Writes one chunk's examples as a shard, and the chunk's report."""
  index, count, list_file = chunk
  with tf.io.gfile.GFile(list_file) as f:
    listed = json.load(f)
  files = [data_layout.ImageFile(*item[:3]) for item in listed]
  sampled = [item[3] for item in listed]
  counts = collections.Counter()
  skipped = []
  shard = os.path.join(split_uri,
                       f'data_tfrecord-{index:05d}-of-{count:05d}.gz')
  with tf.io.TFRecordWriter(shard + '.tmp', options='GZIP') as writer:
    for f, read in zip(files, _read_all([f.path for f in files], sampled,
                                        max_image_pixels)):
      if isinstance(read, class_folders.ImageProblem):
        skipped.append([f.relative_path, str(read)])
        continue
      data, header, pixels = read
      counts[f.class_name] += 1
      writer.write(tf_examples.make_example(
          data, class_index[f.class_name], f.class_name, f.relative_path,
          header, pixels).SerializeToString())
  tf.io.gfile.rename(shard + '.tmp', shard, overwrite=True)
  _write_json(os.path.join(work_dir, f'{split}-{index:05d}.report.json'),
              {'split': split, 'counts': counts, 'skipped': skipped})


def _read_all(paths: Sequence[str], sampled: Sequence[bool],
              max_image_pixels: int) -> Iterator[Any]:
  """(bytes, header, pixel statistics) or the ImageProblem of each path, in
  order; the statistics None where `sampled` is False.

  Checking a photo is most of ingest's work (a JPEG is decoded to be
  checked), and Pillow's decoders and file reads release the GIL: so files
  of photo size are read and checked by threads, one per CPU the cgroup's
  quota allows (not the node's cores, which os.cpu_count() gives), while the
  caller writes. Small files (MNIST's PNGs) are checked in microseconds of
  Python that holds the GIL, where threads only contend, so they stay on
  this thread; the first batch's sizes decide. Threads start in
  microseconds, where Beam's multi-processing mode costs seconds per run, so
  small runs keep their fast start. Each task is a batch of files, and only
  a few batches per thread wait in memory. Files in a bucket are read by
  storage.CONCURRENT_REQUESTS threads whatever their size: each is a round
  trip, which no CPU is busy waiting for.
  """
  items = list(zip(paths, sampled))
  batches = [items[i:i + _BATCH] for i in range(0, len(items), _BATCH)]
  if not batches:
    return
  read = functools.partial(_read_batch, max_image_pixels=max_image_pixels)
  first = read(batches[0])
  yield from first
  sizes = [len(r[0]) for r in first if not isinstance(r, Exception)]
  large = sizes and sum(sizes) / len(sizes) >= _THREADED_FILE_BYTES
  threads = min(cpu_quota.usable_cpus(), len(batches) - 1) if large else 1
  if storage.is_remote(paths[0]):
    threads = min(storage.CONCURRENT_REQUESTS, len(batches) - 1)
  if threads < 2:
    for batch in batches[1:]:
      yield from read(batch)
    return
  with futures.ThreadPoolExecutor(threads) as pool:
    pending = collections.deque()
    for batch in batches[1:]:
      pending.append(pool.submit(read, batch))
      if len(pending) >= _QUEUED_PER_THREAD * threads:
        yield from pending.popleft().result()
    while pending:
      yield from pending.popleft().result()


def _read_batch(items: Sequence[Tuple[str, bool]],
                max_image_pixels: int) -> List[Any]:
  return [_read_one(path, max_image_pixels, sampled)
          for path, sampled in items]


def _read_one(path: str, max_image_pixels: int, sampled: bool) -> Any:
  try:
    data, header = class_folders.read_image(path, max_image_pixels)
  except class_folders.ImageProblem as e:
    return e
  if not sampled:
    return data, header, None
  try:
    return data, header, pixel_statistics.of_image(data, header.format)
  except Exception as e:  # PIL raises many; a PNG is checked undecoded
    return class_folders.ImageProblem(f'not a readable image: {e}')


def _write_json(path: str, value: Any, **options) -> None:
  """In one write: json.dump to a GFile sends every token through TF's file
  layer, which for a chunk's file list costs more than reading its PNGs."""
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(json.dumps(value, **options))


def _dataset_facts(plan: data_layout.DataPlan,
                   work_dir: str) -> dataset_facts.DatasetFacts:
  counts = {s: collections.Counter() for s in data_layout.SPLITS}
  skipped = [list(entry) for entry in plan.skipped]
  for path in tf.io.gfile.glob(os.path.join(work_dir, '*.report.json')):
    with tf.io.gfile.GFile(path) as f:
      report = json.load(f)
    counts[report['split']].update(report['counts'])
    skipped += report['skipped']
  return dataset_facts.DatasetFacts(
      **plan.summary(),
      examples={s: sum(c.values()) for s, c in counts.items()},
      examples_per_class={
          s: {n: c[n] for n in plan.class_names} for s, c in counts.items()
      },
      skipped=sorted(skipped))


def _check(facts: dataset_facts.DatasetFacts,
           options: options_lib.ExampleGenOptions) -> None:
  """Logs what was skipped; fails when the data cannot train a classifier."""
  skipped = facts.skipped
  class_folders.log_skipped(skipped[:_LOGGED_SKIPS])
  if len(skipped) > _LOGGED_SKIPS:
    progress.warn('... and %d more skipped files (see %s)',
                  len(skipped) - _LOGGED_SKIPS, names.DATASET_INFO_FILE)
  total = sum(facts.examples.values()) + len(skipped)  # every file found
  if total and len(skipped) / total > options.max_bad_fraction:
    raise UserError(
        f'{len(skipped)} of {total} files ({len(skipped) / total:.1%}) are not '
        f'readable images, more than max_bad_fraction '
        f'{options.max_bad_fraction:.1%}; first: {skipped[0][0]}: '
        f'{skipped[0][1]}')
  per_class = facts.examples_per_class
  empty = [n for n, c in per_class[data_layout.TRAIN].items() if c == 0]
  if empty:
    raise UserError(f'{facts.data_root}: no readable training images for '
                    f'class(es) {empty}')
  empty = [n for n, c in per_class[data_layout.TEST].items() if c == 0]
  if empty:  # the same rule as imgcls train's
    raise UserError(
        f'{facts.data_root}: the test split has no readable images of '
        f'class(es) {empty}, so the model could not be judged on them; add '
        f'some to test/<class>/' +
        (' (or more images: the test split is 20% of them, by a hash of the '
         'path)' if facts.test_source == 'hash' else ''))


def _record_on_artifact(examples,
                        facts: dataset_facts.DatasetFacts) -> None:
  """The few facts whose size does not grow with the class count.

  Not the class names: every custom property rides in each downstream
  step's executor input, which KFP's driver passes as one argv element
  (kubeflow/pipelines@2.16.1:backend/src/v2/driver/driver.go,
  initPodSpecPatch's `--executor_input`), and Linux
  refuses an element over 128 KiB (MAX_ARG_STRLEN), a few thousand class
  names. They are in the artifact's dataset facts file.
  """
  examples.set_int_custom_property(names.PROP_SKIPPED_FILES, len(facts.skipped))
  examples.set_string_custom_property(names.PROP_EXAMPLE_COUNTS,
                                      json.dumps(facts.examples))
  examples.set_string_custom_property(names.PROP_TRAIN_SPANS,
                                      json.dumps(facts.train_spans))
  examples.set_string_custom_property(names.PROP_TEST_SOURCE, facts.test_source)
