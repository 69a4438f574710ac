"""What the report shows about the test split, read from a run's artifacts.

The confusion matrix is the Evaluator's own (TFMA's plot), so the report and
the blessing decision agree. The misclassified images come from running the
trained SavedModel over the test split's TFRecords through `serving_examples`,
the signature the Evaluator called: TFMA keeps counts, not the examples.
"""
import dataclasses
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_model_analysis.writers import eval_config_writer
from tfx.utils import path_utils

from imgcls.components import gated_evaluator
from imgcls.contract import names, saved_model
from imgcls.imagedata import tf_examples

_BATCH = 256


@dataclasses.dataclass(frozen=True)
class Misclassified:
  image: bytes  # the encoded file, as the model received it
  path: str  # relative to the data root
  true_name: str
  predicted_name: str
  confidence: float  # the predicted class's probability


@dataclasses.dataclass
class TestErrors:
  """Misclassified test images: how many in all, and the first few."""
  count: int  # test images predicted
  wrong: int
  examples: List[Misclassified]


def gate(evaluation_uri: str) -> List[str]:
  """The blessing's conditions, as the Evaluator was configured for the run
  (the ModelBlessing's reason names only the failed ones)."""
  eval_config = eval_config_writer.load_eval_run(evaluation_uri)[0]
  conditions = []
  for spec in eval_config.metrics_specs:
    for metric in spec.metrics:
      thresholds = [t.threshold for t in metric.per_slice_thresholds]
      if metric.HasField('threshold'):
        thresholds.append(metric.threshold)
      for threshold in thresholds:
        conditions += [
            f'{metric.class_name} {condition}' for condition in
            gated_evaluator.threshold_conditions(threshold)
        ]
  return conditions


def test_errors(model_uri: str, examples_uri: str, class_names: Sequence[str],
                limit: int, counts: Optional[np.ndarray] = None) -> TestErrors:
  """The first `limit` misclassified test images, in file order.

  With the Evaluator's confusion matrix (`counts`), the totals are its own,
  so the page and the blessing agree, and prediction stops at the `limit`-th
  error: at 99% accuracy a tenth of a large test split (issue 26). Without
  one, every test image is predicted and counted here.
  """
  model = saved_model.load_artifact(path_utils.serving_model_path(model_uri))
  count = wrong = 0
  kept: List[Misclassified] = []
  for batch in tf_examples.test_records(examples_uri, _BATCH):
    if counts is not None and len(kept) >= limit:
      break
    outputs = model.predict_examples(batch)
    for serialized, class_id, probabilities in zip(
        batch, outputs[names.CLASS_ID_OUTPUT],
        outputs[names.PROBABILITIES_OUTPUT]):
      count += 1
      example = tf.train.Example.FromString(serialized)
      label = _int_feature(example, names.LABEL_KEY)
      if class_id == label:
        continue
      wrong += 1
      if len(kept) < limit:
        kept.append(
            Misclassified(
                image=_bytes_feature(example, names.IMAGE_KEY),
                path=_bytes_feature(example, names.PATH_KEY).decode(),
                true_name=class_names[label],
                predicted_name=class_names[class_id],
                confidence=float(probabilities[class_id])))
  if counts is not None:
    count, wrong = int(counts.sum()), int(counts.sum() - np.trace(counts))
  return TestErrors(count, wrong, kept)


def _int_feature(example: tf.train.Example, key: str) -> int:
  return example.features.feature[key].int64_list.value[0]


def _bytes_feature(example: tf.train.Example, key: str) -> bytes:
  return example.features.feature[key].bytes_list.value[0]
