"""What the pixels of an image look like, for data validation to compare
across spans: each channel's mean intensity and its spread, as bins. A new
camera or scanner, inverted or washed-out images, a preprocessing bug
upstream: the header's facts (size, channels, format) stay the same, these
do not.

Bins of fixed bounds, as text ('red 032-047'), not the numbers: TFDV
compares text values by their exact counts, while its numeric histograms
span each dataset's own range and are aligned by spreading counts evenly
within buckets (tensorflow_data_validation/anomalies/metrics.cc,
AlignHistograms), which reads images of a few tight looks, drawn again, as
drift.

Decoding costs more than everything else the ExampleGen does with a small
PNG, which it checks without decoding. So a sample of each split is decoded,
as many images of each class (`per_class_quota`): the sample's class mix is
the same whatever the data's, so that a class gaining share, which the label
checks report, does not read as the pixels drifting.
"""
import collections
import dataclasses
import io
import math
import statistics
from typing import List, Sequence

import numpy as np
from PIL import Image, ImageStat

CHANNELS = ('red', 'green', 'blue')
# Bin widths on 0-255 (mean) and 0-127.5 (standard deviation): 16 bins each.
MEAN_BIN = 16
STD_BIN = 8
# The sample: about a thousand images of a split, or one in SAMPLE_EVERY of
# a larger one, shared equally by its classes, but no more of each than the
# typical (median) class has, and at least MIN_PER_CLASS (all of a smaller
# class).
MIN_SAMPLE = 1000
SAMPLE_EVERY = 32
MIN_PER_CLASS = 20
# Pillow's modes of a 16-bit grayscale PNG; scaled to 0-255 like the others.
_SIXTEEN_BIT = ('I', 'I;16', 'I;16B', 'I;16L')
_SIXTEEN_BIT_SCALE = 65535 / 255
_BINS = 16


@dataclasses.dataclass(frozen=True)
class PixelStatistics:
  """A bin per channel (red, green, blue) of its mean intensity and of its
  standard deviation; a grayscale image's three are equal."""
  mean: List[str]
  std: List[str]


def per_class_quota(class_sizes: Sequence[int]) -> int:
  """How many images of each class of a split are decoded, given how many
  each has (classes without images left out)."""
  sizes = [size for size in class_sizes if size]
  if not sizes:
    return 0
  total = sum(sizes)
  sample = min(total, max(MIN_SAMPLE, math.ceil(total / SAMPLE_EVERY)))
  return max(MIN_PER_CLASS, min(statistics.median_low(sizes),
                                math.ceil(sample / len(sizes))))


def sampled(class_names: Sequence[str]) -> List[bool]:
  """Whether each of a split's images, by its class, in the order given
  (the ExampleGen's hashed order), is decoded: the first of each class, up
  to the quota."""
  quota = per_class_quota(list(collections.Counter(class_names).values()))
  taken = collections.Counter()
  chosen = []
  for name in class_names:
    taken[name] += 1
    chosen.append(taken[name] <= quota)
  return chosen


def labels(width: int) -> List[str]:
  """Every value a feature of bins `width` wide can take, in order."""
  return [_label(channel, bin_index, width) for channel in CHANNELS
          for bin_index in range(_BINS)]


def of_image(encoded: bytes, image_format: str) -> PixelStatistics:
  """The statistics of a checked image (GIF: its first frame), as RGB."""
  with Image.open(io.BytesIO(encoded), formats=[image_format]) as image:
    if image.mode in _SIXTEEN_BIT:
      values = np.asarray(image, dtype=np.float64) / _SIXTEEN_BIT_SCALE
      mean, std = [values.mean()], [values.std()]
    else:
      # Pillow's histogram of L or RGB, without a copy; others are converted.
      stat = ImageStat.Stat(image if image.mode in ('L', 'RGB')
                            else image.convert('RGB'))
      mean, std = stat.mean, stat.stddev
  if len(mean) == 1:
    mean, std = mean * 3, std * 3
  return PixelStatistics(_binned(mean, MEAN_BIN), _binned(std, STD_BIN))


def _binned(values: Sequence[float], width: int) -> List[str]:
  return [_label(channel, min(int(value // width), _BINS - 1), width)
          for channel, value in zip(CHANNELS, values)]


def _label(channel: str, bin_index: int, width: int) -> str:
  low = bin_index * width
  return f'{channel} {low:03d}-{low + width - 1:03d}'
