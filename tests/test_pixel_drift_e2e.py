"""Issue 36, case 11: a span of colour-inverted digits, whose sizes, channels,
format and classes are those of the span before, is refused by the data gate
for its pixels, by `imgcls retrain --once` and by `imgcls run`, naming the
pixel statistic; `--accept-anomalies` takes it."""
import os

import numpy as np
from PIL import Image
import pytest

from imgcls import cli
from imgcls.retrain import state as state_lib
from imgcls.serving_dir import versions as model_versions

pytestmark = pytest.mark.e2e


def _inverted_copy(source: str, target: str) -> None:
  """255 - each pixel of every image under `source`, same names."""
  for folder, _, files in os.walk(source):
    out = os.path.join(target, os.path.relpath(folder, source))
    os.makedirs(out, exist_ok=True)
    for name in files:
      with Image.open(os.path.join(folder, name)) as image:
        Image.fromarray(255 - np.asarray(image)).save(os.path.join(out, name))


def _places(root, pipeline):
  return ['--data-root', str(root / 'data'), '--serving-dir',
          str(root / 'serving'), '--pipeline-root', str(root / pipeline),
          '--epochs', '1', '--window', '1', '--min-accuracy', '0',
          '--max-accuracy-drop', '1']


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  """span-1 of the sample digits, trained on and accepted by retrain; span-2
  the same digits inverted."""
  root = tmp_path_factory.mktemp('pixels')
  span_1 = str(root / 'data' / 'span-1')
  assert cli.main(['sample-data', '--out', span_1]) == 0
  assert cli.main(['retrain', '--once', *_places(root, 'pipeline')]) == 0
  _inverted_copy(span_1, str(root / 'data' / 'span-2'))
  return root


def test_retrain_refuses_the_inverted_span_naming_the_pixels(root, capsys):
  capsys.readouterr()
  assert cli.main(['retrain', '--once', *_places(root, 'pipeline')]) == 1
  out = capsys.readouterr().out
  assert 'span-2: refused: data anomalies, nothing trained' in out
  assert 'train pixel_mean: High approximate Jensen-Shannon divergence' in out
  refused = state_lib.load(str(root / 'pipeline')).current()
  assert (refused.data_key, refused.refused_for) == ('span-2', 'anomalies')
  assert model_versions.versions(str(root / 'serving' / 'LenetModel')) == [1]


def test_run_refuses_it_too(root, capsys):
  capsys.readouterr()
  assert cli.main(['run', *_places(root, 'run-pipeline')]) == 1
  out = capsys.readouterr().out
  assert 'data REFUSED before training' in out
  assert 'train pixel_mean: ' in out
  assert 'is 1 (up to six significant digits), above the threshold 0.1' in out
  assert model_versions.versions(str(root / 'serving' / 'LenetModel')) == [1]


def test_accept_anomalies_takes_it(root, capsys):
  capsys.readouterr()
  assert cli.main(['retrain', '--once', *_places(root, 'pipeline'),
                   '--accept-anomalies']) == 0
  out = capsys.readouterr().out
  assert 'span-2: pushed version 2 (answered with --accept-anomalies)' in out
  assert model_versions.versions(str(root / 'serving' / 'LenetModel')) == [
      1, 2]
