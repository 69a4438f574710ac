"""Turning pixels and encoded images into the fixed-size float input a model
needs.

One implementation serves the model's signatures, the training input
pipelines and the clients that send decoded pixels, so what is served is
preprocessed exactly as what was trained.
"""
from typing import Sequence

import numpy as np
import tensorflow as tf

from imgcls.contract import names
from imgcls.imagedata import image_header

# The longest fixed-offset header read by declared_pixels (BMP's height).
_HEADER_BYTES = 26

# ITU-R 601 luma weights, normalised to sum to 1 so that gray -> RGB -> gray
# is the identity. NumPy, not a TensorFlow op: no op may run on import, or a
# training replica can no longer configure its collective ops.
_LUMA = (np.array([0.2989, 0.5870, 0.1140], np.float32) /
         np.float32(0.9999)).tolist()


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


def decode_rgb(image_bytes: tf.Tensor,
               max_pixels: int = names.MAX_IMAGE_PIXELS) -> tf.Tensor:
  """One encoded PNG/JPEG/BMP/GIF (GIF: first frame) -> (h, w, 3) uint8.

  The size the header declares is checked before decoding, because decoding
  allocates it: a 196-byte PNG may declare 30000x30000 pixels. Such an image
  fails the call with INVALID_ARGUMENT naming the limit, and nothing is
  allocated for it.
  """
  check = tf.debugging.assert_less_equal(
      declared_pixels(image_bytes), tf.constant(max_pixels, tf.int64),
      message=f'an image declares more than {max_pixels:,} pixels (width x '
      f'height) in its header, the most this model decodes '
      f'(MAX_IMAGE_PIXELS); send a smaller image')
  with tf.control_dependencies([check]):
    image = tf.io.decode_image(image_bytes, channels=3,
                               expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode_image(image_bytes: tf.Tensor, image_shape,
                 max_pixels: int = names.MAX_IMAGE_PIXELS) -> tf.Tensor:
  """One encoded image -> (H, W, C) float32 at the model's input size."""
  return resize_pixels(decode_rgb(image_bytes, max_pixels)[tf.newaxis],
                       image_shape)[0]


def declared_pixels(image_bytes: tf.Tensor) -> tf.Tensor:
  """width x height (int64) as an encoded image's header declares it, read
  in-graph the way imagedata.image_header reads it in Python; 0 for what is
  not PNG, JPEG, GIF or BMP (decode_image then says so).

  JPEG through tf.image.extract_jpeg_shape (its frame header); PNG from the
  IHDR (big-endian width, height at bytes 16, 20), GIF from its logical
  screen (little-endian 16-bit at 6, 8), BMP from its info header (signed
  little-endian 32-bit at 18, 22), as decode_image_op.cc reads them. A GIF
  whose frames declare more than its logical screen is not caught here.
  """
  # Padding makes the fixed-offset reads of a short input well-defined.
  padded = tf.strings.join([image_bytes, tf.constant(bytes(_HEADER_BYTES))])

  def number(offset, length, big_endian):
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, offset, length),
                                   tf.uint8), tf.int64)
    weights = [256**i for i in range(length)]
    return tf.reduce_sum(raw * (weights[::-1] if big_endian else weights))

  def signed32(value):
    return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

  def starts_with(signature):
    return tf.equal(tf.strings.substr(padded, 0, len(signature)), signature)

  def jpeg():
    shape = tf.cast(tf.image.extract_jpeg_shape(image_bytes), tf.int64)
    return shape[0] * shape[1]

  return tf.case([
      (tf.io.is_jpeg(image_bytes), jpeg),
      (starts_with(image_header.PNG_SIGNATURE),
       lambda: number(16, 4, True) * number(20, 4, True)),
      (starts_with(b'GIF8'), lambda: number(6, 2, False) * number(8, 2, False)),
      (starts_with(b'BM'), lambda: signed32(number(18, 4, False)) *
       signed32(number(22, 4, False))),
  ], default=lambda: tf.constant(0, tf.int64), exclusive=False)


def decode_images(image_bytes: tf.Tensor, image_shape) -> tf.Tensor:
  """A [None] string tensor of encoded images, each of any size -> a batch."""
  return tf.map_fn(
      lambda one: decode_image(one, image_shape),
      image_bytes,
      fn_output_signature=tf.TensorSpec(image_shape, tf.float32))


def client_rgb(encoded: bytes) -> np.ndarray:
  """(h, w, 3) uint8 pixels, decoded as serving_bytes decodes them.

  Not with Pillow: for a JPEG, TensorFlow's decoder runs libjpeg's fast
  integer DCT and Pillow's the accurate one, and their pixels differ by a
  few levels (docs/serving.md, "Pixels a client sends"), enough to turn a
  near-tie between two classes.
  """
  return decode_rgb(tf.constant(encoded)).numpy()


def client_pixels(encoded: Sequence[bytes], image_shape) -> np.ndarray:
  """Encoded images -> the (b, H, W, C) float batch serving_default takes:
  decoded and resized as serving_bytes does, so the answers match."""
  return np.stack(
      [decode_image(tf.constant(e), image_shape).numpy() for e in encoded])
