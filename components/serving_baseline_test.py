"""Tests for ServingBaseline: the newest published version, or none."""
import os

from tfx.types import standard_artifacts
from tfx.utils import path_utils

from imgcls.components import serving_baseline
from imgcls.contract import names


def _run(model_base_path, tmp_path):
  baseline = standard_artifacts.Model()
  baseline.uri = str(tmp_path / 'baseline')
  serving_baseline.ServingBaseline.EXECUTOR_SPEC.executor_class().Do(
      {}, {'baseline': [baseline]},
      {'model_base_path': model_base_path, 'published_hint': ''})
  return baseline


def test_nothing_published_gives_a_baseline_without_a_model(tmp_path):
  baseline = _run(str(tmp_path / 'serving' / 'M'), tmp_path)
  assert not serving_baseline.has_model(baseline)


def test_the_newest_version_is_copied(tmp_path):
  base = tmp_path / 'serving' / 'M'
  for version in (1, 3, 2):
    (base / str(version)).mkdir(parents=True)
    (base / str(version) / 'saved_model.pb').write_text(str(version))
  (base / '.tmp-4').mkdir()  # a publish in progress is no version
  baseline = _run(str(base), tmp_path)
  assert serving_baseline.has_model(baseline)
  assert baseline.get_int_custom_property(names.PROP_SERVING_VERSION) == 3
  copied = os.path.join(path_utils.serving_model_dir(baseline.uri),
                        'saved_model.pb')
  with open(copied) as f:
    assert f.read() == '3'
