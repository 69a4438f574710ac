"""Pixel statistics: a bin per channel, for every mode an accepted file
decodes to, and the class-balanced sample of a split decoded for them."""
import io

import numpy as np
from PIL import Image
import pytest

from imgcls.imagedata import pixel_statistics
from tests import images


def _gray():
  return images.digit_like(3)


def _rgb():
  gray = _gray()
  return np.stack([gray, 255 - gray, gray // 2], axis=-1)


def _bins(pixels):
  """The expected statistics, by numpy."""
  rgb = np.broadcast_to(pixels[..., None], (*pixels.shape, 3)) if (
      pixels.ndim == 2) else pixels
  values = rgb.reshape(-1, 3).astype(np.float64)

  def label(channel, value, width):
    low = min(int(value // width), 15) * width
    return f'{channel} {low:03d}-{low + width - 1:03d}'

  channels = ('red', 'green', 'blue')
  return ([label(c, v, 16) for c, v in zip(channels, values.mean(axis=0))],
          [label(c, v, 8) for c, v in zip(channels, values.std(axis=0))])


@pytest.mark.parametrize('fmt, pixels', [
    ('PNG', _gray), ('PNG', _rgb), ('BMP', _gray), ('BMP', _rgb),
    ('GIF', _gray)])
def test_a_bin_of_each_channel_of_a_lossless_file(fmt, pixels):
  drawn = pixels()
  found = pixel_statistics.of_image(images.encode(drawn, fmt), fmt)
  assert (found.mean, found.std) == _bins(drawn)


def test_a_jpeg_is_measured_as_decoded():
  encoded = images.encode(_rgb(), 'JPEG')
  decoded = np.asarray(Image.open(io.BytesIO(encoded)))
  found = pixel_statistics.of_image(encoded, 'JPEG')
  assert (found.mean, found.std) == _bins(decoded)


def test_alpha_is_left_out_and_sixteen_bits_are_scaled_to_eight():
  drawn = _rgb()
  rgba = np.concatenate([drawn, np.zeros((*drawn.shape[:2], 1), np.uint8)],
                        axis=-1)
  found = pixel_statistics.of_image(images.encode(rgba), 'PNG')
  assert (found.mean, found.std) == _bins(drawn)
  buffer = io.BytesIO()
  Image.fromarray(_gray().astype(np.uint16) * 257).save(buffer, 'PNG')
  found = pixel_statistics.of_image(buffer.getvalue(), 'PNG')
  assert (found.mean, found.std) == _bins(_gray())


def test_inverted_pixels_move_the_mean_not_the_spread():
  drawn = _gray()
  plain = pixel_statistics.of_image(images.encode(drawn), 'PNG')
  inverted = pixel_statistics.of_image(images.encode(255 - drawn), 'PNG')
  assert plain.mean == ['red 048-063', 'green 048-063', 'blue 048-063']
  assert inverted.mean == ['red 192-207', 'green 192-207', 'blue 192-207']
  assert inverted.std == plain.std


def test_the_last_bins_hold_the_highest_values():
  white = np.full((4, 4), 255, np.uint8)
  assert pixel_statistics.of_image(images.encode(white), 'PNG').mean[0] == (
      'red 240-255')
  halves = np.array([[0, 255]] * 4, np.uint8)
  assert pixel_statistics.of_image(images.encode(halves), 'PNG').std[0] == (
      'red 120-127')
  assert pixel_statistics.labels(16)[-1] == 'blue 240-255'
  assert len(pixel_statistics.labels(8)) == 48


@pytest.mark.parametrize('sizes, quota', [
    ([], 0),
    ([10, 30], 20),  # at least 20 of each: all of the smaller class
    ([300, 300, 300], 300),  # up to a thousand in all
    ([200, 20, 20], 20),  # as many of each as the median class has
    ([20_000, 20_000], 625),
    ([30_000, 30_000], 938),  # one in 32 of a large split
    ([20_000, 5, 20_000], 417),  # a small class does not shrink the sample
])
def test_as_many_of_each_class_up_to_the_sample(sizes, quota):
  assert pixel_statistics.per_class_quota(sizes) == quota


def test_the_first_images_of_each_class_are_sampled(monkeypatch):
  monkeypatch.setattr(pixel_statistics, 'MIN_PER_CLASS', 2)
  monkeypatch.setattr(pixel_statistics, 'MIN_SAMPLE', 4)
  classes = ['a', 'b', 'a', 'a', 'b', 'a', 'b', 'b', 'a', 'a']
  assert pixel_statistics.sampled(classes) == [
      True, True, True, False, True, False, False, False, False, False]
