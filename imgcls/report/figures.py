"""The report's figures, drawn with matplotlib into PNG files (the
misclassified images composed with PIL).

Figures are built with `matplotlib.figure.Figure`, not pyplot: no global
figure state and no interactive backend, so drawing works on headless
machines and in threads; PNGs are rendered by Agg.
"""
import math
from typing import Dict, List, Optional, Sequence

from matplotlib.figure import Figure
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imgcls.contract import names
from imgcls.imagedata import class_folders
from imgcls.report.evaluation import Misclassified
from imgcls.report.statistics import Distributions

_DPI = 100
# The report's text column is 64em, 1024 px at browsers' default 16 px:
# figures of the data section are drawn at least half as wide, image facts
# as wide.
FACT_WIDTH_IN = 10.24
_FACT_AXES = {
    names.IMAGE_WIDTH_KEY: 'image width (pixels)',
    names.IMAGE_HEIGHT_KEY: 'image height (pixels)',
    names.IMAGE_CHANNELS_KEY: 'channels',
    names.FILE_SIZE_KEY: 'file size (bytes)',
    names.IMAGE_FORMAT_KEY: 'image format',
}
_GRID_COLUMNS = 8
_GRID_CELL_PX = 160  # a cell's width: two caption lines and the image
_GRID_IMAGE_PX = 112
_GRID_GAP_PX = 12
_CAPTION_FONT_PX = 11
# Above this many classes the confusion matrix cells are too small for counts.
_MAX_ANNOTATED_CLASSES = 20


def training_curves(history: Dict[str, List[float]], path: str) -> None:
  """Loss and accuracy per epoch, training and validation side by side."""
  figure = Figure(figsize=(10, 3.8), dpi=_DPI)
  for axes, metric in zip(figure.subplots(1, 2), ('loss', 'accuracy')):
    for key, label in ((metric, 'train'), (f'val_{metric}', 'validation')):
      values = history.get(key)
      if values:
        epochs = range(1, len(values) + 1)
        axes.plot(epochs, values, marker='o', label=label)
    axes.set_title(metric)
    axes.set_xlabel('epoch')
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend()
  _save(figure, path)


def confusion_matrix(counts: np.ndarray, class_names: Sequence[str],
                     path: str) -> None:
  """Counts of (actual, predicted); the diagonal holds the right answers."""
  size = max(4.0, 0.45 * len(class_names) + 2)
  figure = Figure(figsize=(size + 1, size), dpi=_DPI)
  axes = figure.subplots()
  image = axes.imshow(counts, cmap='Blues')
  figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
  ticks = range(len(class_names))
  axes.set_xticks(ticks, class_names, rotation=90 if len(ticks) > 10 else 0)
  axes.set_yticks(ticks, class_names)
  axes.set_xlabel('predicted')
  axes.set_ylabel('actual')
  if len(class_names) <= _MAX_ANNOTATED_CLASSES:
    threshold = counts.max() / 2
    for (actual, predicted), n in np.ndenumerate(counts):
      if n:
        axes.text(predicted, actual, str(n), ha='center', va='center',
                  fontsize=8, color='white' if n > threshold else 'black')
  _save(figure, path)


def per_class_accuracy(accuracy: Dict[str, float], path: str) -> None:
  classes = list(accuracy)
  figure = Figure(figsize=(max(5.0, 0.5 * len(classes) + 2), 3.5), dpi=_DPI)
  axes = figure.subplots()
  axes.bar(range(len(classes)), [accuracy[n] for n in classes],
           color='tab:blue')
  axes.set_xticks(range(len(classes)), classes,
                  rotation=90 if len(classes) > 10 else 0)
  axes.set_ylim(0, 1)
  axes.set_ylabel('accuracy')
  axes.set_xlabel('class')
  axes.grid(axis='y', alpha=0.3)
  _save(figure, path)


def misclassified_grid(examples: Sequence[Misclassified], path: str) -> None:
  """The images as the model saw them (before resizing), labelled.

  Composed with PIL: the same grid as 32 matplotlib axes took half a second
  of every run's report (issue 26). Small images are enlarged without
  smoothing, so their pixels stay visible.
  """
  columns = min(_GRID_COLUMNS, len(examples))
  rows = math.ceil(len(examples) / columns)
  font = ImageFont.load_default(size=_CAPTION_FONT_PX)
  line = _CAPTION_FONT_PX + 3
  cell_height = 2 * line + _GRID_IMAGE_PX + _GRID_GAP_PX
  sheet = Image.new('RGB', (columns * _GRID_CELL_PX, rows * cell_height),
                    'white')
  draw = ImageDraw.Draw(sheet)
  for i, example in enumerate(examples):
    left, top = (i % columns) * _GRID_CELL_PX, (i // columns) * cell_height
    for n, text in enumerate((f'true {example.true_name}',
                              f'predicted {example.predicted_name} '
                              f'({example.confidence:.0%})')):
      draw.text((left + 4, top + n * line), _fitted(text, font), font=font,
                fill='firebrick')
    image = _enlarged(Image.fromarray(class_folders.decode_rgb(example.image)))
    sheet.paste(image, (left + (_GRID_CELL_PX - image.width) // 2,
                        top + 2 * line + (_GRID_IMAGE_PX - image.height) // 2))
  sheet.save(path, format='PNG')


def _enlarged(image: Image.Image) -> Image.Image:
  """At _GRID_IMAGE_PX on its longer side: nearest-neighbour up, Lanczos
  down."""
  scale = _GRID_IMAGE_PX / max(image.size)
  size = tuple(max(1, round(side * scale)) for side in image.size)
  return image.resize(size, Image.Resampling.NEAREST if scale >= 1 else
                      Image.Resampling.LANCZOS)


def _fitted(text: str, font) -> str:
  """`text`, cut with an ellipsis to the cell's width (the table below the
  grid has the whole class names)."""
  width = _GRID_CELL_PX - 8
  while font.getlength(text) > width and len(text) > 1:
    text = text[:-2] + '…'
  return text


def class_distribution(current: Dict[str, float],
                       previous: Optional[Dict[str, float]], path: str) -> None:
  """Each class's share of the train images, beside the data accepted
  before: a class arriving at ten times its share stands out."""
  classes = sorted(set(current) | set(previous or {}))
  figure = Figure(figsize=(max(FACT_WIDTH_IN / 2 + 1, 0.6 * len(classes) + 2),
                          3.5), dpi=_DPI)
  axes = figure.subplots()
  positions = np.arange(len(classes))
  for offset, (label, counts) in zip(
      (-0.2, 0.2), _with_previous('this run', current, previous)):
    axes.bar(positions + offset, [_share(counts, c) for c in classes], 0.4,
             label=label)
  axes.set_xticks(positions, classes, rotation=90 if len(classes) > 10 else 0)
  axes.set_ylabel('share of train images')
  axes.grid(axis='y', alpha=0.3)
  axes.legend()
  _save(figure, path)


def image_fact(name: str, current: Distributions,
               previous: Optional[Distributions], path: str) -> None:
  """One image fact of the train images (width, height, channels, file size
  or format) as shares, over the data accepted before, at the width of the
  report's text: wide enough to read each bin."""
  figure = Figure(figsize=(FACT_WIDTH_IN, 3.0), dpi=_DPI)
  axes = figure.subplots()
  for label, dist in _with_previous('this run', current, previous):
    if name in dist.histograms:
      buckets = dist.histograms[name]
      total = sum(count for _, _, count in buckets) or 1
      axes.bar([low for low, _, _ in buckets],
               [count / total for _, _, count in buckets],
               [max(high - low, 1) for low, high, _ in buckets],
               align='edge', alpha=0.5, label=label, edgecolor='black',
               linewidth=0.5)
    elif name in dist.counts:
      values = sorted(dist.counts[name])
      axes.bar(values, [_share(dist.counts[name], v) for v in values],
               alpha=0.5, label=label)
  axes.set_xlabel(_FACT_AXES.get(name, name))
  axes.set_ylabel('share of train images')
  axes.grid(axis='y', alpha=0.3)
  axes.legend()
  _save(figure, path)


def _with_previous(label: str, current, previous):
  return [(label, current)] + ([('previous accepted', previous)]
                               if previous is not None else [])


def _share(counts: Dict[str, float], key: str) -> float:
  return counts.get(key, 0) / (sum(counts.values()) or 1)


def _save(figure: Figure, path: str) -> None:
  figure.tight_layout()
  figure.savefig(path, format='png')
