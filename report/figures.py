"""The report's figures, drawn with matplotlib into PNG files.

Figures are built with `matplotlib.figure.Figure`, not pyplot: no global
figure state and no interactive backend, so drawing works on headless
machines and in threads; PNGs are rendered by Agg.
"""
import io
import math
from typing import Dict, List, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from imagedata import class_folders
from report.evaluation import Misclassified

_DPI = 100
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
  names = list(accuracy)
  figure = Figure(figsize=(max(5.0, 0.5 * len(names) + 2), 3.5), dpi=_DPI)
  axes = figure.subplots()
  axes.bar(range(len(names)), [accuracy[n] for n in names], color='tab:blue')
  axes.set_xticks(range(len(names)), names,
                  rotation=90 if len(names) > 10 else 0)
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


def _save(figure: Figure, path: str) -> None:
  figure.tight_layout()
  figure.savefig(path, format='png')
