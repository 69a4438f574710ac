"""Images as the inputs of a served image signature, whatever it is called.

A signature with one DT_STRING input takes encoded images (serving_bytes); one
with a single float input takes pixel batches (serving_default). Reading the
input's name and dtype from the server's metadata keeps clients working when
the model's signatures are renamed or retyped.
"""
import io
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from imgcls.clients.client import SignatureInfo, TensorInfo
from imgcls.contract.errors import UserError
from imgcls.imagedata import class_folders, preprocessing


def sole_input(name: str, signature: SignatureInfo) -> Tuple[str, TensorInfo]:
  """The one input of an image signature."""
  if len(signature.inputs) != 1:
    raise UserError(f'signature {name} has inputs {sorted(signature.inputs)}; '
                    f'an image signature has exactly one')
  return next(iter(signature.inputs.items()))


def fixed_pixel_shape(info: TensorInfo) -> Optional[Tuple[int, int, int]]:
  """(height, width, channels) of a pixel input that fixes them, else None."""
  shape = info.shape or []
  if len(shape) == 4 and all(d > 0 for d in shape[1:]):
    return tuple(shape[1:])
  return None


def same_request_key(signature: SignatureInfo, encoded: bytes):
  """Images with equal keys can share one request to the signature: any
  encoded images, pixels resized to a fixed input, or pixels of one size."""
  _, info = next(iter(signature.inputs.items()))
  if info.dtype == 'DT_STRING' or fixed_pixel_shape(info):
    return None
  return class_folders.pixel_size(encoded)


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


def signature_inputs(name: str, signature: SignatureInfo,
                     images: Sequence[bytes]) -> Dict[str, np.ndarray]:
  """The request inputs that send `images` (encoded) to the signature.

  A pixel input with a fixed size gets the images resized as the model
  resizes (imagedata.preprocessing); one of free size takes them as decoded,
  one size per request (batches_by_size).
  """
  input_name, info = sole_input(name, signature)
  if info.dtype == 'DT_STRING':
    return {input_name: np.array(list(images), dtype=object)}
  dtype = tf.as_dtype(types_pb2.DataType.Value(info.dtype))
  if not dtype.is_floating:
    raise UserError(f'signature {name} takes {info.dtype}; image signatures '
                    f'take DT_STRING (encoded) or float pixels')
  shape = fixed_pixel_shape(info)
  pixels = (preprocessing.client_pixels(images, shape) if shape else
            np.stack([preprocessing.client_rgb(image) for image in images]))
  return {input_name: pixels.astype(dtype.as_numpy_dtype)}


def demo_png(size: Tuple[int, int] = (28, 28)) -> bytes:
  """A small colour-gradient PNG, for checks that need any real image."""
  width, height = size
  x = np.linspace(0, 255, width, dtype=np.uint8)[np.newaxis, :]
  y = np.linspace(0, 255, height, dtype=np.uint8)[:, np.newaxis]
  rgb = np.stack(np.broadcast_arrays(x, y, 255 - (x // 2 + y // 2)), axis=-1)
  buffer = io.BytesIO()
  Image.fromarray(rgb.astype(np.uint8)).save(buffer, format='PNG')
  return buffer.getvalue()
