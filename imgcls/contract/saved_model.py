"""A SavedModel of this project, used through its signatures as a server would.

`imgcls evaluate`, `imgcls predict`, the pipeline's contract check and the
serving tests all read exported models this way, never through Keras, so
they see exactly what TF Serving sees.
"""
import functools
from typing import Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf

from imgcls.contract import names


class SavedClassifier:
  """The three signatures of an exported ImageClassifierModel."""

  def __init__(self, path: str):
    self.path = path
    self._loaded = tf.saved_model.load(path)
    self.signatures = self._loaded.signatures
    self.class_names = [
        n.decode() for n in self._loaded.get_class_names().numpy()
    ]

  @property
  def pixel_shape(self) -> Tuple[int, int, int]:
    """(height, width, channels) that serving_default takes."""
    signature = self.signatures[names.SERVING_DEFAULT]
    _, kwargs = signature.structured_input_signature
    return tuple(kwargs[names.PIXELS_INPUT].shape[1:])

  def predict_bytes(self, encoded: Sequence[bytes]) -> Dict[str, np.ndarray]:
    return self.call(names.SERVING_BYTES,
                      **{names.BYTES_INPUT: tf.constant(list(encoded),
                                                     tf.string)})

  def predict_pixels(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
    return self.call(names.SERVING_DEFAULT,
                      **{names.PIXELS_INPUT: tf.constant(pixels, tf.float32)})

  def predict_examples(self,
                       serialized: Sequence[bytes]) -> Dict[str, np.ndarray]:
    return self.call(names.SERVING_EXAMPLES,
                      **{names.EXAMPLES_INPUT: tf.constant(list(serialized),
                                                        tf.string)})

  def call(self, signature: str, **inputs) -> Dict[str, np.ndarray]:
    outputs = self.signatures[signature](
        **{name: tf.constant(value) for name, value in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


@functools.lru_cache(maxsize=1)
def load_artifact(path: str) -> SavedClassifier:
  """The SavedClassifier of a pipeline's model artifact, the last one kept.

  TFX writes an artifact's URI once, so within `imgcls run` the contract
  check and the report read the same model and the second load (0.5 s for
  LeNet, issue 26) is skipped. Not for directories that change, such as a
  serving directory's versions.
  """
  return SavedClassifier(path)
