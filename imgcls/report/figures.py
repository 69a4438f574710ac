"""The report's figures, drawn with matplotlib into PNG files.

Figures are built with `matplotlib.figure.Figure`, not pyplot: no global
figure state and no interactive backend, so drawing works on headless
machines and in threads; PNGs are rendered by Agg.
"""
import math
from typing import Dict, List, Optional, Sequence

from matplotlib.figure import Figure
import numpy as np

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
  """The images as the model saw them (before resizing), labelled."""
  columns = min(_GRID_COLUMNS, len(examples))
  rows = math.ceil(len(examples) / columns)
  figure = Figure(figsize=(1.6 * columns, 1.9 * rows), dpi=_DPI)
  for axes, example in zip(
      np.atleast_1d(figure.subplots(rows, columns)).ravel(), examples):
    axes.imshow(class_folders.decode_rgb(example.image))
    axes.set_title(f'true {example.true_name}\npredicted '
                   f'{example.predicted_name} ({example.confidence:.0%})',
                   fontsize=8, color='firebrick')
  for axes in figure.axes:
    axes.set_axis_off()
  _save(figure, path)


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
