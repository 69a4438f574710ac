"""Small real image files for tests, in every format the models serve."""
import io
import os
import struct
from typing import Callable, Dict, Optional, Sequence
import zlib

import numpy as np
from PIL import Image

from imgcls.imagedata import image_header, sample_data

FORMATS = ('PNG', 'JPEG', 'BMP', 'GIF')
_EXTENSIONS = {'PNG': 'png', 'JPEG': 'jpg', 'BMP': 'bmp', 'GIF': 'gif'}


def digit_like(label: int, size=(28, 28), seed: int = 0) -> np.ndarray:
  """A grayscale image whose bright column band depends on the label, so a
  model can learn it in one epoch."""
  rng = np.random.default_rng(seed * 31 + label)
  image = rng.integers(0, 40, size, dtype=np.uint8)
  width = size[1]
  band = slice(label * width // 10, (label + 1) * width // 10 + 1)
  image[:, band] = 255
  return image


def encode(pixels: np.ndarray, fmt: str = 'PNG') -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, fmt)
  return buf.getvalue()


def animated_gif(frames: Sequence[np.ndarray]) -> bytes:
  buf = io.BytesIO()
  images = [Image.fromarray(f) for f in frames]
  images[0].save(buf, 'GIF', save_all=True, append_images=images[1:])
  return buf.getvalue()


def write_class_folders(
    root: str, per_class: Dict[str, int], fmt='PNG', seed: int = 0,
    classes: Sequence[str] = None,
    pixels: Optional[Callable[[int, int], np.ndarray]] = None) -> str:
  """root/<class>/<seed>-<n>.<ext>; class i gets label i. The one writer of
  class folders for tests: `pixels(label, n)` draws image n of a class,
  digit_like images by default."""
  names = list(classes or sorted(per_class))
  draw = pixels or (lambda label, n: digit_like(label, seed=seed * 1000 + n))
  sample_data.write_files(
      ((os.path.join(name, f'{seed}-{n}.{_EXTENSIONS[fmt]}'),
        encode(draw(label, n), fmt))
       for label, name in enumerate(names)
       for n in range(per_class[name])), root)
  for name in names:  # a class of 0 images still has its folder
    os.makedirs(os.path.join(root, name), exist_ok=True)
  return root


def png_header(width, height, colour_type=2, bit_depth=8):
  """A PNG signature and IHDR with a correct CRC, and nothing after."""
  body = b'IHDR' + struct.pack('>IIBBBBB', width, height, bit_depth,
                               colour_type, 0, 0, 0)
  return (image_header.PNG_SIGNATURE + struct.pack('>I', 13) + body +
          struct.pack('>I', zlib.crc32(body)))


SHAPES = ('circle', 'square', 'triangle')
EVEN_SHAPES = {name: 20 for name in SHAPES}
# 'circle' at ten times its share: 200 of 240 instead of 20 of 60.
SKEWED_SHAPES = {**EVEN_SHAPES, 'circle': 200}


def write_shape_splits(root, per_class, size=(28, 28), rgb=True, seed=0,
                       inverted=False):
  """root/{train,test}/<class>/*.png; test gets half as many per class.
  `inverted`: 255 - each pixel, as a scanner set to negatives gives them."""

  def pixels(label, n):
    gray = digit_like(label, size=size, seed=seed * 1000 + n)
    gray = 255 - gray if inverted else gray
    return np.stack([gray] * 3, axis=-1) if rgb else gray

  for split, share in (('train', 1), ('test', 2)):
    write_class_folders(
        os.path.join(root, split),
        {name: per_class[name] // share for name in SHAPES},
        classes=SHAPES, pixels=pixels)
  return str(root)
