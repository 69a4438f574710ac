"""The pixels a client sends to serving_default are the pixels serving_bytes
makes of the same encoded image, bit for bit, JPEGs included."""
import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from imgcls.imagedata import preprocessing


def _photo(height=96, width=128, seed=0) -> np.ndarray:
  """Smooth colour waves with noise: a JPEG of it has every kind of block."""
  y, x = np.mgrid[0:height, 0:width]
  waves = np.stack([128 + 100 * np.sin(x / 7), 128 + 100 * np.cos(y / 5),
                    (x * y) % 256], -1)
  noise = np.random.default_rng(seed).normal(0, 25, waves.shape)
  return np.clip(waves + noise, 0, 255).astype(np.uint8)


def _encode(pixels, fmt, **options) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, fmt, **options)
  return buffer.getvalue()


_IMAGES = {
    'jpeg 4:2:0': _encode(_photo(), 'JPEG', quality=75),
    'jpeg 4:2:2': _encode(_photo(), 'JPEG', quality=90, subsampling=1),
    'jpeg 4:4:4': _encode(_photo(), 'JPEG', quality=95, subsampling=0),
    'jpeg progressive': _encode(_photo(), 'JPEG', progressive=True),
    'jpeg grayscale': _encode(_photo()[..., 0], 'JPEG'),
    'jpeg odd size': _encode(_photo(97, 131), 'JPEG'),
    'png': _encode(_photo(), 'PNG'),
    'png 16-bit gray': _encode(_photo()[..., 0].astype(np.uint16) * 257,
                               'PNG'),
    'gif': _encode(_photo(), 'GIF'),
    'bmp': _encode(_photo(), 'BMP'),
}


@pytest.mark.parametrize('kind', sorted(_IMAGES))
@pytest.mark.parametrize('image_shape', [(28, 28, 1), (64, 64, 3)])
def test_client_pixels_are_the_serving_graphs_pixels(kind, image_shape):
  encoded = _IMAGES[kind]
  in_graph = preprocessing.decode_images(tf.constant([encoded]), image_shape)
  np.testing.assert_array_equal(
      preprocessing.client_pixels([encoded], image_shape), in_graph.numpy())


@pytest.mark.parametrize('kind', sorted(k for k in _IMAGES if 'jpeg' in k))
def test_pillow_decodes_a_jpeg_otherwise(kind):
  """Why clients do not decode with Pillow: TensorFlow's JPEG decoder runs
  libjpeg's fast integer DCT (INTEGER_FAST), Pillow's the accurate one
  (INTEGER_ACCURATE); the pixels differ by a few levels (docs/serving.md)."""
  encoded = _IMAGES[kind]
  with Image.open(io.BytesIO(encoded)) as image:
    pillow = np.asarray(image.convert('RGB')).astype(int)
  served = preprocessing.client_rgb(encoded).astype(int)
  accurate = tf.io.decode_jpeg(encoded, channels=3,
                               dct_method='INTEGER_ACCURATE').numpy()
  np.testing.assert_array_equal(pillow, accurate)
  assert 0 < np.abs(pillow - served).max() <= 16
