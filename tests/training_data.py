"""An ExampleGen-shaped Examples artifact on disk, for Trainer and Tuner
tests that call the module functions without a pipeline."""
import json
import os
import types
from typing import Dict

import tensorflow as tf

from imgcls.contract import names
from imgcls.imagedata import tf_examples
from tests import images


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
  per_class = recorded or per_class
  info = {
      names.DATASET_INFO_CLASS_NAMES: class_names,
      names.DATASET_INFO_EXAMPLES: {s: sum(c.values())
                                    for s, c in per_class.items()},
      'examples_per_class': per_class,
  }
  with open(os.path.join(uri, names.DATASET_INFO_FILE), 'w') as f:
    json.dump(info, f)
  return info


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
