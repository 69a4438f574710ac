"""SampleExamples: the few test records, and the dataset facts, that the
ContractCheck and the Pusher read, as a small Examples artifact of their own.

On Kubeflow Pipelines the launcher downloads every input artifact in full
before a step starts (kubeflow/pipelines@2.16.1:backend/src/v2/component/
launcher_v2.go, downloadArtifacts: no selective copy). Given the
ImageExampleGen's Examples, the ContractCheck (32 images) and the Pusher (4
warm-up images, the training spans) would each download every split of the
whole dataset. This step reads the first `size` records of the test split
once and writes them, with the facts file and the properties those steps
read, in the Examples layout they already read (`Split-test/*.gz`,
dataset_info.json): their code does not change, only what they are given.
"""
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import (
  InputArtifact,
  OutputArtifact,
  Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples

from imgcls.contract import names
from imgcls.imagedata import dataset_facts, tf_examples

# The Examples properties the sample keeps: small, and read downstream
# (the Pusher's provenance records the training spans).
_KEPT_PROPERTIES = (names.PROP_TRAIN_SPANS, names.PROP_TEST_SOURCE)
SAMPLE_FILE = 'data_tfrecord-00000-of-00001.gz'


@component
def SampleExamples(  # TFX component naming
    examples: InputArtifact[Examples],
    sample: OutputArtifact[Examples],
    size: Parameter[int]) -> None:
  """The first `size` test records of `examples`, its facts and spans."""
  records = next(tf_examples.test_records(examples.uri, size, size), [])
  split_dir = os.path.join(sample.uri, f'Split-{names.TEST_SPLIT}')
  tf.io.gfile.makedirs(split_dir)
  with tf.io.TFRecordWriter(os.path.join(split_dir, SAMPLE_FILE),
                            options='GZIP') as writer:
    for record in records:
      writer.write(record)
  dataset_facts.write(sample.uri, dataset_facts.read(examples.uri))
  sample.split_names = artifact_utils.encode_split_names([names.TEST_SPLIT])
  for name in _KEPT_PROPERTIES:
    if examples.has_custom_property(name):
      sample.set_string_custom_property(
          name, examples.get_string_custom_property(name))
