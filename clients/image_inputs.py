"""Images as the inputs of a served image signature, whatever it is called.

A signature with one DT_STRING input takes encoded images (serving_bytes); one
with a single float input takes pixel batches (serving_default). Reading the
input's name and dtype from the server's metadata keeps clients working when
the model's signatures are renamed or retyped.
"""
import io
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow.core.framework import types_pb2

from contract.errors import UserError
from clients.client import SignatureInfo, TensorInfo
from imagedata.class_folders import decode_rgb


def sole_input(name: str, signature: SignatureInfo) -> Tuple[str, TensorInfo]:
  """The one input of an image signature."""
  if len(signature.inputs) != 1:
    raise UserError(f'signature {name} has inputs {sorted(signature.inputs)}; '
                    f'an image signature has exactly one')
  return next(iter(signature.inputs.items()))


def takes_encoded_images(name: str, signature: SignatureInfo) -> bool:
  return sole_input(name, signature)[1].dtype == 'DT_STRING'


def signature_inputs(name: str, signature: SignatureInfo,
                     images: Sequence[bytes]) -> Dict[str, np.ndarray]:
  """The request inputs that send `images` (encoded) to the signature.

  Pixel inputs need images of one size per request: batch accordingly.
  """
  input_name, info = sole_input(name, signature)
  if info.dtype == 'DT_STRING':
    return {input_name: np.array(list(images), dtype=object)}
  dtype = tf.as_dtype(types_pb2.DataType.Value(info.dtype))
  if not dtype.is_floating:
    raise UserError(f'signature {name} takes {info.dtype}; image signatures '
                    f'take DT_STRING (encoded) or float pixels')
  return {
      input_name:
          np.stack([decode_rgb(image) for image in images]).astype(
              dtype.as_numpy_dtype)
  }


def demo_png(size: Tuple[int, int] = (28, 28)) -> bytes:
  """A small colour-gradient PNG, for checks that need any real image."""
  width, height = size
  x = np.linspace(0, 255, width, dtype=np.uint8)[np.newaxis, :]
  y = np.linspace(0, 255, height, dtype=np.uint8)[:, np.newaxis]
  rgb = np.stack(np.broadcast_arrays(x, y, 255 - (x // 2 + y // 2)), axis=-1)
  buffer = io.BytesIO()
  Image.fromarray(rgb.astype(np.uint8)).save(buffer, format='PNG')
  return buffer.getvalue()
