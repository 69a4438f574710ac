"""A SavedModel of this project, used through its signatures as a server would.

`imgcls evaluate`, `imgcls predict`, the pipeline's contract check and the
serving tests all read exported models this way, never through Keras, so
they see exactly what TF Serving sees.
"""
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
from contract import names


class SavedClassifier:
  """The three signatures of an exported ImageClassifierModel."""

  def __init__(self, path: str):
    self.path = path
    self._loaded = tf.saved_model.load(path)
    self.signatures = self._loaded.signatures
    self.class_names = [
        n.decode() for n in self._loaded.get_class_names().numpy()
    ]

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


def batches_by_size(sizes: Sequence, batch_size: int) -> List[List[int]]:
  """Image indices in batches of at most `batch_size` that share one size:
  a pixel batch is one dense tensor, so mixed sizes go as separate calls."""
  by_size: Dict[object, List[int]] = {}
  for index, size in enumerate(sizes):
    by_size.setdefault(size, []).append(index)
  return [
      indices[start:start + batch_size]
      for indices in by_size.values()
      for start in range(0, len(indices), batch_size)
  ]


def predict_pixels_by_size(model: SavedClassifier,
                           pixels: Sequence[np.ndarray],
                           batch_size: int = 256) -> List[str]:
  """Class names from serving_default for images of mixed sizes."""
  class_names: List[str] = [''] * len(pixels)
  for indices in batches_by_size([p.shape for p in pixels], batch_size):
    batch = np.stack([pixels[i] for i in indices])
    outputs = model.predict_pixels(batch)[names.CLASS_NAME_OUTPUT]
    for i, name in zip(indices, outputs):
      class_names[i] = name.decode()
  return class_names
