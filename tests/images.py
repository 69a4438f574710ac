"""Small real image files for tests, in every format the models serve."""
import io
import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from PIL import Image

from imgcls.imagedata import sample_data

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
