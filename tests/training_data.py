"""An ExampleGen-shaped Examples artifact on disk, for Trainer and Tuner
tests that call the module functions without a pipeline."""
import os
import types
from typing import Dict

import tensorflow as tf

from imgcls.imagedata import dataset_facts, tf_examples
from tests import artifacts, images


def write_examples(uri: str, per_class: Dict[str, Dict[str, int]],
                   recorded=None) -> Dict:
  """`uri/Split-<split>/data.gz` and dataset_info.json, as the ExampleGen
  writes them; `recorded` replaces the per-class counts in the info."""
  class_names = sorted(per_class['train'])
  for split, counts in per_class.items():
    os.makedirs(os.path.join(uri, f'Split-{split}'))
    path = os.path.join(uri, f'Split-{split}', 'data_tfrecord-0.gz')
    with tf.io.TFRecordWriter(path, options='GZIP') as writer:
      for label, name in enumerate(class_names):
        for n in range(counts[name]):
          encoded = images.encode(images.digit_like(label, seed=n))
          writer.write(tf_examples.make_example(
              encoded, label, name, f'{split}/{name}/{n}.png'
          ).SerializeToString())
  facts = artifacts.dataset_facts_of(recorded or per_class)
  dataset_facts.write(uri, facts)
  return facts


def fn_args(examples_uri: str, out_dir: str, custom_config,
            hyperparameters=None):
  """The FnArgs fields run_fn and tuner_fn read, with fresh output
  directories, as TFX gives each execution."""
  os.makedirs(out_dir, exist_ok=True)
  return types.SimpleNamespace(
      train_files=[os.path.join(examples_uri, 'Split-train', '*')],
      eval_files=[os.path.join(examples_uri, 'Split-test', '*')],
      custom_config=custom_config,
      hyperparameters=hyperparameters,
      model_run_dir=os.path.join(out_dir, 'model_run'),
      serving_model_dir=os.path.join(out_dir, 'serving_model'),
      working_dir=os.path.join(out_dir, 'working'))
