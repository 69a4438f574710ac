"""Turning pixels and encoded images into the fixed-size float input a model needs.

One implementation serves the model's signatures, the training input
pipelines and the clients that send decoded pixels, so what is served is
preprocessed exactly as what was trained.
"""
from typing import Sequence

import numpy as np
import tensorflow as tf

from imagedata.class_folders import decode_rgb

# ITU-R 601 luma weights, normalised to sum to 1 so that gray -> RGB -> gray
# is the identity.
_LUMA = tf.constant([0.2989, 0.5870, 0.1140]) / 0.9999


def to_channels(images: tf.Tensor, channels: int) -> tf.Tensor:
  """Converts a float batch (b, h, w, 1|3|4) to `channels` (1 or 3).

  The channel count is checked at run time, because a served signature
  accepts any; alpha (a 4th channel) is dropped.
  """
  found = tf.shape(images)[-1]
  check = tf.debugging.Assert(
      tf.reduce_any(tf.equal(found, [1, 3, 4])),
      ['images must have 1, 3 or 4 channels, got', found])
  with tf.control_dependencies([check]):
    images = tf.identity(images)
  if channels == 3:
    converted = tf.cond(
        tf.equal(found, 1), lambda: tf.tile(images[..., :1], [1, 1, 1, 3]),
        lambda: images[..., :3])
  else:
    converted = tf.cond(
        tf.equal(found, 1), lambda: images[..., :1],
        lambda: tf.reduce_sum(images[..., :3] * _LUMA, -1, keepdims=True))
  batch, height, width = images.shape[:3]
  converted.set_shape([batch, height, width, channels])
  return converted


def resize_pixels(images: tf.Tensor, image_shape) -> tf.Tensor:
  """A float batch of any size and 1/3/4 channels -> (b, H, W, C) float32."""
  height, width, channels = image_shape
  images = to_channels(tf.cast(images, tf.float32), channels)
  return tf.image.resize(images, [height, width])


def decode_image(image_bytes: tf.Tensor, image_shape) -> tf.Tensor:
  """One encoded PNG/JPEG/BMP/GIF (GIF: first frame) -> (H, W, C) float32."""
  image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return resize_pixels(image[tf.newaxis], image_shape)[0]


def decode_images(image_bytes: tf.Tensor, image_shape) -> tf.Tensor:
  """A [None] string tensor of encoded images, each of any size -> a batch."""
  return tf.map_fn(
      lambda one: decode_image(one, image_shape),
      image_bytes,
      fn_output_signature=tf.TensorSpec(image_shape, tf.float32))


def client_pixels(encoded: Sequence[bytes], image_shape) -> np.ndarray:
  """Encoded images -> the (b, H, W, C) float batch serving_default takes.

  What a client with its own decoder does: decode to RGB, then resize with
  the model's own resize, so the answers match serving_bytes'.
  """
  return np.stack([
      resize_pixels(decode_rgb(e)[np.newaxis], image_shape)[0].numpy()
      for e in encoded
  ])
