"""The data validation gate, executor by executor, on small real image folders.

As TFX's own *_executor_test.py do, the executors run directly on artifacts
on disk: the real ImageExampleGen executor reads class folders, TFX's
StatisticsGen executor computes TFDV statistics, then CuratedSchemaGen,
DataValidator and DataGate. One baseline dataset is accepted first; each
ordinary way new data goes wrong is then validated against it.
"""
import os
import shutil

import pytest
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from imgcls.components.data_validation import component, store
from imgcls.components.data_validation import schema as schema_lib
from imgcls.components.data_validation.options import DataValidationOptions
from imgcls.components.image_example_gen import executor as example_gen_executor
from imgcls.components.image_example_gen.options import ExampleGenOptions
from imgcls.contract import names
from imgcls.contract.errors import UserError
from tests import images


def _statistics(data_root, out) -> standard_artifacts.ExampleStatistics:
  """ImageExampleGen's and StatisticsGen's executors, as the pipeline runs
  them."""
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(out, 'examples')
  example_gen_executor.Executor().Do({}, {'examples': [examples]}, {
      'input_base': data_root,
      'custom_config': proto_utils.proto_to_json(
          ExampleGenOptions().to_custom_config()),
  })
  statistics = standard_artifacts.ExampleStatistics()
  statistics.uri = os.path.join(out, 'statistics')
  statistics_executor.Executor().Do(
      {'examples': [examples]}, {'statistics': [statistics]},
      {'stats_options_json': schema_lib.statistics_options().to_json(),
       'exclude_splits': '[]'})
  return statistics


def _schema(statistics, schema_dir, out) -> standard_artifacts.Schema:
  schema = standard_artifacts.Schema()
  schema.uri = os.path.join(out, 'schema')
  os.makedirs(schema.uri, exist_ok=True)
  component.CuratedSchemaGen.EXECUTOR_SPEC.executor_class().Do(
      {'statistics': [statistics]}, {'schema': [schema]},
      {'options': DataValidationOptions(schema_dir=schema_dir).to_parameter(),
       'state_hint': ''})
  return schema


def _validate(statistics, schema_dir, out, accept=False
             ) -> standard_artifacts.ExampleAnomalies:
  """CuratedSchemaGen, then DataValidator; returns the anomalies artifact."""
  schema = _schema(statistics, schema_dir, out)
  anomalies = standard_artifacts.ExampleAnomalies()
  anomalies.uri = os.path.join(out, 'anomalies')
  os.makedirs(anomalies.uri, exist_ok=True)
  component.DataValidator.EXECUTOR_SPEC.executor_class().Do(
      {'statistics': [statistics], 'schema': [schema]},
      {'anomalies': [anomalies]},
      {'options': DataValidationOptions(
          schema_dir=schema_dir, accept_anomalies=accept).to_parameter(),
       'state_hint': ''})
  return anomalies


def _gate(anomalies) -> None:
  component.DataGate.EXECUTOR_SPEC.executor_class().Do(
      {'anomalies': [anomalies]}, {}, {})


@pytest.fixture(scope='module')
def baseline(tmp_path_factory):
  """The first data (RGB, 28x28, classes even), validated and accepted."""
  root = tmp_path_factory.mktemp('baseline')
  statistics = _statistics(
      images.write_shape_splits(root / 'data', images.EVEN_SHAPES), str(root))
  schema_dir = str(root / 'schema')
  anomalies = _validate(statistics, schema_dir, str(root / 'first'))
  return schema_dir, statistics, anomalies


@pytest.fixture(scope='module')
def new_data(tmp_path_factory):
  """Statistics of new data, made once per kind and shared by the tests."""
  made = {}
  kinds = {
      'same': dict(per_class=images.EVEN_SHAPES, seed=1),
      'skewed': dict(per_class=images.SKEWED_SHAPES, seed=2),
      'larger': dict(per_class=images.EVEN_SHAPES, size=(224, 224), seed=3),
      'grayscale': dict(per_class=images.EVEN_SHAPES, rgb=False, seed=4),
      'inverted': dict(per_class=images.EVEN_SHAPES, inverted=True, seed=5),
  }

  def statistics_of(kind):
    if kind not in made:
      root = tmp_path_factory.mktemp(kind)
      made[kind] = _statistics(
          images.write_shape_splits(root / 'data', **kinds[kind]), str(root))
    return made[kind]

  return statistics_of


@pytest.fixture
def schema_dir(baseline, tmp_path):
  """The baseline's schema directory, copied: each test accepts on its own."""
  copy = str(tmp_path / 'schema')
  shutil.copytree(baseline[0], copy)
  return copy


def _anomalies_of(anomalies):
  return component.recorded_anomalies(anomalies)


def _features(anomalies):
  return {a['feature'] for a in _anomalies_of(anomalies)}


def test_first_run_writes_statistics_and_a_curated_schema(baseline):
  schema_dir, statistics, anomalies = baseline
  for split in ('train', 'test'):
    assert os.path.exists(os.path.join(
        statistics.uri, f'Split-{split}', 'FeatureStats.pb'))
  kept = store.read_schema(schema_dir)
  features = {f.name: f for f in kept.feature}
  assert set(features) == set(schema_lib.STATISTICS_FEATURES)
  assert features[names.IMAGE_KEY].HasField('image_domain')
  assert list(features[names.LABEL_NAME_KEY].string_domain.value) == list(
      images.SHAPES)
  assert features[names.IMAGE_CHANNELS_KEY].int_domain.max == 4
  assert features[names.IMAGE_WIDTH_KEY].int_domain.min == 1
  drift = features[names.LABEL_NAME_KEY].drift_comparator
  assert drift.infinity_norm.threshold == 0.1
  skew = features[names.IMAGE_WIDTH_KEY].skew_comparator
  assert skew.jensen_shannon_divergence.threshold == 0.1
  # A file's size is compared with the previous span's, not the test split's.
  file_size = features[names.FILE_SIZE_KEY]
  assert file_size.drift_comparator.jensen_shannon_divergence.threshold == 0.1
  assert not file_size.HasField('skew_comparator')
  # So are the pixels' statistics, of a sample: a bin of each channel.
  for name in names.PIXEL_STATISTIC_KEYS:
    pixels = features[name]
    assert pixels.drift_comparator.jensen_shannon_divergence.threshold == 0.1
    assert not pixels.HasField('skew_comparator')
    assert (pixels.value_count.min, pixels.value_count.max) == (3, 3)
    assert not pixels.HasField('shape')
    assert pixels.presence.min_fraction == 0
    assert len(pixels.string_domain.value) == 48  # every bin, seen or not
  # The schema artifact is the kept file's content, and says it was inferred.
  assert anomalies.get_int_custom_property(names.PROP_BLESSED) == 1
  assert _anomalies_of(anomalies) == []
  assert anomalies.get_int_custom_property(names.PROP_HAS_PREVIOUS) == 0
  assert store.read_accepted(schema_dir) is not None


def test_image_bytes_are_counted_as_bytes_not_decoded_as_text(baseline):
  """tensorflow/tfx#1622: without an image_domain, TFDV decodes every image
  as UTF-8 and warns once per example."""
  train = schema_lib.load_split(baseline[1], 'train')
  (image,) = [f for f in train.datasets[0].features
              if f.path.step == [names.IMAGE_KEY]]
  assert image.type == image.BYTES
  assert image.bytes_stats.max_num_bytes > 0
  assert not image.HasField('string_stats')


def test_data_from_the_same_distribution_passes(schema_dir, new_data,
                                                tmp_path):
  anomalies = _validate(new_data('same'), schema_dir, str(tmp_path))
  assert _anomalies_of(anomalies) == []
  assert anomalies.get_int_custom_property(names.PROP_BLESSED) == 1
  assert anomalies.get_int_custom_property(names.PROP_HAS_PREVIOUS) == 1
  _gate(anomalies)  # does not raise


@pytest.mark.parametrize('kind, features, found', [
    ('skewed', {names.LABEL_NAME_KEY},
     'Linfty distance between current and previous is 0.5'),
    ('larger', {names.IMAGE_WIDTH_KEY, names.IMAGE_HEIGHT_KEY},
     'Jensen-Shannon divergence between current and previous is 1'),
    ('grayscale', {names.IMAGE_CHANNELS_KEY},
     'Jensen-Shannon divergence between current and previous is 1'),
    # Issue 36, case 11: the header's facts are the same, the pixels not.
    ('inverted', {names.PIXEL_MEAN_KEY},
     'Jensen-Shannon divergence between current and previous is 1'),
])
def test_changed_data_is_refused_naming_the_feature_and_the_distance(
    kind, features, found, schema_dir, new_data, tmp_path):
  accepted_before = store.read_accepted(schema_dir)
  anomalies = _validate(new_data(kind), schema_dir, str(tmp_path))
  assert anomalies.get_int_custom_property(names.PROP_BLESSED) == 0
  assert features <= _features(anomalies)
  for feature in features:
    assert any(a['feature'] == feature and found in a['description'] and
               a['split'] == 'train' for a in _anomalies_of(anomalies))
  with pytest.raises(component.DataRefused) as refused:
    _gate(anomalies)
  for feature in features:
    assert f'train {feature}: ' in str(refused.value)
  assert '--accept-anomalies' in str(refused.value)
  # Refused data never becomes the next run's baseline.
  assert store.read_accepted(schema_dir) == accepted_before
  # TFX's own layout, for TFX's and TFDV's tools.
  assert os.path.exists(os.path.join(anomalies.uri, 'Split-train',
                                     'SchemaDiff.pb'))


@pytest.mark.parametrize('kind', ['skewed', 'larger', 'grayscale', 'inverted'])
def test_accept_anomalies_lets_each_through_and_makes_it_the_baseline(
    kind, schema_dir, new_data, tmp_path):
  accepted = _validate(new_data(kind), schema_dir, str(tmp_path / 'accept'),
                       accept=True)
  assert accepted.get_int_custom_property(names.PROP_BLESSED) == 1
  assert accepted.get_int_custom_property(names.PROP_ANOMALIES_ACCEPTED) == 1
  assert _anomalies_of(accepted)  # still listed
  _gate(accepted)
  # The next data like it is compared with it, and passes.
  again = _validate(new_data(kind), schema_dir, str(tmp_path / 'again'))
  assert [a for a in _anomalies_of(again) if a['split'] == 'train' and
          'previous' in a['description']] == []


def test_an_edited_schema_lets_a_deliberate_change_through(
    schema_dir, new_data, tmp_path):
  kept = store.read_schema(schema_dir)
  for feature in kept.feature:
    if feature.name == names.LABEL_NAME_KEY:
      feature.drift_comparator.infinity_norm.threshold = 0.6
      feature.skew_comparator.infinity_norm.threshold = 0.6
  store.write_schema(schema_dir, kept)
  anomalies = _validate(new_data('skewed'), schema_dir, str(tmp_path))
  assert _anomalies_of(anomalies) == []


def test_inverted_pixels_are_the_only_anomaly_of_an_inverted_span(
    schema_dir, new_data, tmp_path):
  anomalies = _validate(new_data('inverted'), schema_dir, str(tmp_path))
  assert _features(anomalies) == {names.PIXEL_MEAN_KEY}


def test_a_schema_and_baseline_kept_from_before_pixel_statistics_pass(
    schema_dir, new_data, tmp_path):
  """They gain the new features, where TFDV would call them new columns."""
  kept = store.read_schema(schema_dir)
  pixel_features = [f for f in kept.feature
                    if f.name in names.PIXEL_STATISTIC_KEYS]
  for feature in pixel_features:
    kept.feature.remove(feature)
  store.write_schema(schema_dir, kept)
  accepted = store.read_accepted(schema_dir)
  features = accepted.datasets[0].features
  for feature in [f for f in features
                  if f.path.step[0] in names.PIXEL_STATISTIC_KEYS]:
    features.remove(feature)
  store.write_accepted(schema_dir, accepted)
  anomalies = _validate(new_data('same'), schema_dir, str(tmp_path))
  assert _anomalies_of(anomalies) == []
  assert [f for f in store.read_schema(schema_dir).feature
          if f.name in names.PIXEL_STATISTIC_KEYS] == pixel_features


def test_a_broken_schema_file_is_named(schema_dir, baseline, tmp_path):
  with open(store.schema_path(schema_dir), 'a') as f:
    f.write('feature { nme: "oops" }\n')
  with pytest.raises(UserError, match=r'schema\.pbtxt: not a valid schema'):
    _schema(baseline[1], schema_dir, str(tmp_path))


def test_the_previous_statistics_are_kept_with_the_anomalies(
    schema_dir, baseline, new_data, tmp_path):
  anomalies = _validate(new_data('same'), schema_dir, str(tmp_path))
  previous = store.read_statistics(
      os.path.join(anomalies.uri, names.PREVIOUS_STATISTICS_FILE))
  assert previous == schema_lib.load_split(baseline[1], 'train')


def test_state_hint_changes_with_either_file(schema_dir):
  before = store.state_hint(schema_dir)
  with open(store.schema_path(schema_dir), 'a') as f:
    f.write('\n')
  assert store.state_hint(schema_dir) not in ('', before)
  assert store.state_hint(os.path.join(schema_dir, 'none')) == ''


def test_retrain_records_refused_data_with_its_anomalies():
  from imgcls.retrain import state as state_lib
  from imgcls.retrain import watcher
  anomaly = {'split': 'train', 'feature': names.IMAGE_CHANNELS_KEY,
             'what': 'High approximate Jensen-Shannon divergence',
             'description': 'between current and previous is 1'}
  result = type('Result', (), {'data_refused': True,
                               'data_anomalies': [anomaly]})()
  attempt = state_lib.Attempt(data_key='span-2',
                              outcome=state_lib.Outcome.RUNNING)
  watcher._run_locally(None, attempt, lambda config: result)
  assert attempt.outcome == state_lib.Outcome.REFUSED
  assert 'train image_channels: High approximate' in attempt.detail
