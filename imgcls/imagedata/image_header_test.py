"""imagedata.image_header: format, size and channels from the header alone.

The reference is what the model's own decoder makes of the same bytes
(tf.io.decode_image, tensorflow/core/kernels/image/decode_image_op.cc); the
hand-made headers port the edge cases of TensorFlow's and Pillow's decoder
tests (top-down BMPs, GIF canvases larger than their frame, JPEG fill bytes
and EXIF segments before the frame header, progressive JPEGs).
"""
import io
import struct

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from imgcls.imagedata import image_header
from imgcls.imagedata.image_header import HeaderError
from tests import images

_MODES = ('L', 'RGB', 'RGBA', 'P', 'LA', 'I;16')


def _encode(mode, fmt, size=(17, 13), **options):
  pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3),
                                             dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).convert(mode).save(buffer, fmt, **options)
  return buffer.getvalue()


def _writable(mode, fmt):
  try:
    _encode(mode, fmt)
  except (OSError, KeyError, ValueError):
    return False
  return True


@pytest.mark.parametrize('fmt', image_header.FORMATS)
@pytest.mark.parametrize('mode', _MODES)
def test_header_agrees_with_what_tensorflow_decodes(mode, fmt):
  if not _writable(mode, fmt):
    pytest.skip(f'Pillow cannot write {mode} as {fmt}')
  data = _encode(mode, fmt)
  header = image_header.read_header(data)
  decoded = tf.io.decode_image(data, expand_animations=False).shape
  assert header.format == fmt
  assert (header.height, header.width, header.channels) == tuple(decoded)


def test_progressive_and_cmyk_jpegs():
  progressive = image_header.read_header(
      _encode('RGB', 'JPEG', (640, 480), progressive=True))
  assert (progressive.width, progressive.height) == (640, 480)
  assert image_header.read_header(_encode('CMYK', 'JPEG')).channels == 4


def test_jpeg_segments_and_fill_bytes_before_the_frame_header():
  jpeg = _encode('RGB', 'JPEG', (40, 30))
  exif = b'\xff\xe1' + struct.pack('>H', 2 + 6) + b'Exif\x00\x00'
  padded = jpeg[:2] + exif + b'\xff\xff\xff' + jpeg[2:]  # fill bytes, B.1.1.2
  header = image_header.read_header(padded)
  assert (header.width, header.height, header.channels) == (40, 30, 3)
  assert tuple(tf.io.extract_jpeg_shape(padded).numpy()) == (30, 40, 3)


def test_gif_size_is_its_largest_frame_as_tensorflow_decodes_it():
  gif = bytearray(_encode('P', 'GIF', (10, 10)))
  struct.pack_into('<HH', gif, 6, 30, 20)  # a logical screen larger than it
  header = image_header.read_header(bytes(gif))
  assert (header.width, header.height) == (10, 10)
  assert tuple(tf.io.decode_gif(bytes(gif)).shape) == (1, 10, 10, 3)
  frames = [np.full((12, 9), 40 * i, np.uint8) for i in range(3)]
  animated = image_header.read_header(images.animated_gif(frames))
  assert (animated.width, animated.height) == (9, 12)


def test_top_down_bmp_has_a_positive_height():
  bmp = bytearray(_encode('RGB', 'BMP', (8, 6)))
  struct.pack_into('<i', bmp, 22, -6)  # rows stored top to bottom
  assert image_header.read_header(bytes(bmp)).height == 6
  assert tf.io.decode_bmp(bytes(bmp)).shape[0] == 6


def test_a_bomb_header_is_read_without_decoding():
  header = image_header.read_header(images.png_header(30000, 30000))
  assert (header.width, header.height, header.pixels) == (30000, 30000, 9e8)


@pytest.mark.parametrize('data,message', [
    (b'', 'empty file'),
    (b'hello, world', 'not a readable image: not a PNG, JPEG'),
    (b'II*\x00' + bytes(12), 'unsupported format TIFF'),
    (b'RIFF\x00\x00\x00\x00WEBPVP8 ', 'unsupported format WebP'),
    (image_header.PNG_SIGNATURE + b'\x00\x00', 'truncated PNG header'),
    (images.png_header(0, 10), 'impossible size 0x10'),
    (images.png_header(4, 4, colour_type=5), 'PNG colour type 5'),
    (b'\xff\xd8\xff\xda\x00\x02', 'JPEG without a frame header'),
    (b'\xff\xd8\xff\xe0\x00', 'truncated JPEG header'),
    (b'GIF89a\x01', 'truncated GIF header'),
    (b'GIF89a' + bytes(7) + b'\x3b', 'GIF without an image'),
    (b'BM' + bytes(12) + struct.pack('<I', 12) + bytes(10), 'OS/2 header'),
])
def test_bad_headers_say_why(data, message):
  with pytest.raises(HeaderError, match=message):
    image_header.read_header(data)


def test_bmps_tensorflow_cannot_decode_are_refused():
  with pytest.raises(HeaderError, match='1 bits per pixel'):
    image_header.read_header(_encode('1', 'BMP'))
  rle = bytearray(_encode('L', 'BMP'))
  struct.pack_into('<I', rle, 30, 1)  # BI_RLE8
  with pytest.raises(HeaderError, match='compression 1'):
    image_header.read_header(bytes(rle))
