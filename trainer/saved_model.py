"""A SavedModel of this project, used through its signatures as a server would.

`imgcls evaluate`, `imgcls predict`, the pipeline's contract check and the
serving tests all read exported models this way, never through Keras, so
they see exactly what TF Serving sees.
"""
import io
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from trainer import models


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
    return self._call(models.SERVING_BYTES,
                      image_bytes_string=tf.constant(list(encoded), tf.string))

  def predict_pixels(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
    return self._call(models.SERVING_DEFAULT,
                      input_tensor=tf.constant(pixels, tf.float32))

  def predict_examples(self,
                       serialized: Sequence[bytes]) -> Dict[str, np.ndarray]:
    return self._call(models.SERVING_EXAMPLES,
                      examples=tf.constant(list(serialized), tf.string))

  def _call(self, signature: str, **inputs) -> Dict[str, np.ndarray]:
    outputs = self.signatures[signature](**inputs)
    return {k: v.numpy() for k, v in outputs.items()}


def decode_pixels(encoded: bytes) -> np.ndarray:
  """An encoded image -> (h, w, 3) float32 pixels 0..255, as a client would
  send them to serving_default (GIF: its first frame)."""
  with Image.open(io.BytesIO(encoded)) as image:
    return np.asarray(image.convert('RGB'), np.float32)


def predict_pixels_by_size(model: SavedClassifier,
                           encoded: Sequence[bytes]) -> List[str]:
  """Class names from serving_default for images of mixed sizes: a float
  batch must be one size, so each size goes as its own batch."""
  pixels = [decode_pixels(e) for e in encoded]
  names: List[str] = [''] * len(pixels)
  by_shape: Dict[tuple, List[int]] = {}
  for i, p in enumerate(pixels):
    by_shape.setdefault(p.shape, []).append(i)
  for indices in by_shape.values():
    batch = np.stack([pixels[i] for i in indices])
    for i, name in zip(indices, model.predict_pixels(batch)['class_name']):
      names[i] = name.decode()
  return names
