"""Tests for ServingBaseline: the newest published version, or none."""
import os

from tfx.types import standard_artifacts
from tfx.utils import path_utils

from imgcls.components import serving_baseline
from imgcls.contract import names


def _outputs(model_base_path, tmp_path):
  baseline = standard_artifacts.Model()
  baseline.uri = str(tmp_path / 'baseline')
  served_version = standard_artifacts.Model()
  served_version.uri = str(tmp_path / 'served_version')
  serving_baseline.ServingBaseline.EXECUTOR_SPEC.executor_class().Do(
      {}, {'baseline': [baseline], 'served_version': [served_version]},
      {'model_base_path': model_base_path, 'published_hint': ''})
  return baseline, served_version


def _run(model_base_path, tmp_path):
  return _outputs(model_base_path, tmp_path)[0]


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


def test_the_served_version_says_the_same_without_the_model(tmp_path):
  """What the Pusher reads, with no files for KFP's launcher to download."""
  base = tmp_path / 'serving' / 'M'
  (base / '2').mkdir(parents=True)
  (base / '2' / 'saved_model.pb').write_text('2')
  _, served = _outputs(str(base), tmp_path)
  assert serving_baseline.has_model(served)
  assert served.get_int_custom_property(names.PROP_SERVING_VERSION) == 2
  assert not os.path.exists(served.uri) or not os.listdir(served.uri)
  _, served = _outputs(str(tmp_path / 'nothing'), tmp_path / 'again')
  assert not serving_baseline.has_model(served)
