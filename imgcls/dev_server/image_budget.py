"""A bound on the pixels one request may make the model decode.

An image's header declares its size, and decoding allocates it: a 97 KB PNG
can declare 10000x10000 pixels, and decoding it takes seconds and gigabytes
that the process keeps. So before a signature runs, the images in its
DT_STRING inputs (encoded images, or tf.Examples holding them) are measured
from their headers, and a request whose images would decode to more than the
budget is refused. TF Serving has no such bound; the model's own in-graph
check of declared dimensions is what protects it there.
"""
from typing import Iterable, Iterator

from google.protobuf import message as proto_message
import numpy as np
from PIL import Image
from tensorflow.core.example import example_pb2

from imgcls.clients.status import invalid_argument
from imgcls.imagedata.class_folders import pixel_size

# PNG, JPEG, GIF and BMP: what the model's decode_image reads.
_MAGIC = (b'\x89PNG\r\n\x1a\n', b'\xff\xd8\xff', b'GIF87a', b'GIF89a', b'BM')
# Bytes per decoded pixel at most: RGBA, one byte each.
_BYTES_PER_PIXEL = 4


def _is_image(data: bytes) -> bool:
  return data.startswith(_MAGIC)


def _images_in(value: bytes) -> Iterator[bytes]:
  """The encoded images in one string: itself, or a tf.Example's bytes."""
  if _is_image(value):
    yield value
    return
  try:
    example = example_pb2.Example.FromString(value)
  except proto_message.DecodeError:
    return
  for feature in example.features.feature.values():
    yield from (v for v in feature.bytes_list.value if _is_image(v))


def _decoded_bytes(image: bytes) -> int:
  try:
    width, height = pixel_size(image)
  except Image.DecompressionBombError:
    return 2**63 - 1  # more pixels than PIL agrees to count
  except Exception:  # not an image: the model says so
    return 0
  return width * height * _BYTES_PER_PIXEL


def check(inputs: Iterable[np.ndarray], budget: int) -> None:
  """Raises INVALID_ARGUMENT if the images in `inputs` would decode to more
  than `budget` bytes together."""
  total = 0
  for value in inputs:
    if value.dtype != object:
      continue
    for element in value.flat:
      for image in _images_in(bytes(element)):
        total += _decoded_bytes(image)
        if total > budget:
          raise invalid_argument(
              f'The images of this request declare more than {budget} bytes '
              f'of decoded pixels (width x height x {_BYTES_PER_PIXEL}), the '
              f"server's limit for one request (--max-decoded-image-bytes)")
