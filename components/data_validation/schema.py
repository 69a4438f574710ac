"""The schema and the checks: what TFDV computes, infers and compares.

TFDV reads encoded images as strings unless a schema gives the feature an
`image_domain` (tensorflow_data_validation/utils/schema_util.py,
get_bytes_features; basic_stats_generator.py then counts bytes instead of
decoding UTF-8, and the top-k generator skips it). Without that, every
example's image is a failed UTF-8 decode (tensorflow/tfx#1622's log flood)
and a useless top-k of file contents. So StatisticsGen gets a small schema
of its own from the first run on, before any schema has been inferred.

Drift (against the last accepted data) and skew (train against test) use
TFDV's own comparators, thresholds in the schema: L-infinity distance for the
categorical features, Jensen-Shannon divergence for the numeric ones
(tensorflow_metadata schema.proto, FeatureComparator). What the pixels look
like is compared too, by Jensen-Shannon divergence of the binned pixel
statistics of a sample (names.PIXEL_STATISTIC_KEYS, computed by the
ExampleGen): TFDV's own image statistics (opt-in, its ImageStatsGenerator)
read formats and sizes, never the pixels' values.
"""
from typing import Dict, List, Optional

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import (
  anomalies_pb2,
  schema_pb2,
  statistics_pb2,
)
from tfx.components.statistics_gen import stats_artifact_utils

from imgcls.components.data_validation.options import DataValidationOptions
from imgcls.contract import names
from imgcls.imagedata import image_header, pixel_statistics

CATEGORICAL = (names.LABEL_NAME_KEY, names.IMAGE_FORMAT_KEY)
NUMERIC = (names.IMAGE_WIDTH_KEY, names.IMAGE_HEIGHT_KEY,
           names.IMAGE_CHANNELS_KEY, names.FILE_SIZE_KEY)
PIXELS = names.PIXEL_STATISTIC_KEYS
# `label` repeats label_name, and `path` is unique per file: neither says
# anything about the data's distribution.
STATISTICS_FEATURES = (names.IMAGE_KEY,) + CATEGORICAL + NUMERIC + PIXELS
# A file's size, and its pixels' statistics, follow its content, image by
# image: between the train and test folders of one span they differ by
# chance, and a small test folder (a few dozen images) exceeds any useful
# divergence by noise alone. Against the previous span, a new camera or
# encoder shows in them, so their drift is measured, not their skew.
_DRIFT_ONLY = (names.FILE_SIZE_KEY,)
# Physical bounds, not the first span's: a deliberate change accepted once
# must not be refused by a range ever after. Drift catches the ordinary
# changes; tighten these in the schema file to refuse outright.
_RANGES = {
    names.IMAGE_WIDTH_KEY: (1, names.MAX_IMAGE_PIXELS),
    names.IMAGE_HEIGHT_KEY: (1, names.MAX_IMAGE_PIXELS),
    names.IMAGE_CHANNELS_KEY: (1, 4),
    names.FILE_SIZE_KEY: (1, None),
}
# Every bin each pixel statistic can take.
_PIXEL_BINS = {
    names.PIXEL_MEAN_KEY: pixel_statistics.labels(pixel_statistics.MEAN_BIN),
    names.PIXEL_STD_KEY: pixel_statistics.labels(pixel_statistics.STD_BIN),
}

Statistics = statistics_pb2.DatasetFeatureStatisticsList


def load_split(statistics, split: str) -> Statistics:
  """One split's statistics from StatisticsGen's ExampleStatistics artifact."""
  return stats_artifact_utils.load_statistics(statistics, split).proto()


def statistics_options() -> tfdv.StatsOptions:
  """StatisticsGen's options: the image as bytes, the features above only."""
  schema = schema_pb2.Schema()
  image = schema.feature.add(name=names.IMAGE_KEY, type=schema_pb2.BYTES)
  image.image_domain.SetInParent()
  return tfdv.StatsOptions(schema=schema,
                           feature_allowlist=list(STATISTICS_FEATURES))


def infer_schema(train: Statistics,
                 options: DataValidationOptions) -> schema_pb2.Schema:
  """SchemaGen's inference (tfx/components/schema_gen/executor.py), then the
  domains and comparators TFDV cannot infer for image folders."""
  schema = tfdv.infer_schema(train, infer_feature_shape=True)
  present = {f.name: f for f in schema.feature}
  image = present[names.IMAGE_KEY]
  image.type = schema_pb2.BYTES
  image.image_domain.SetInParent()
  label_name = present[names.LABEL_NAME_KEY]
  label_name.string_domain.value[:] = _class_names(train)
  if names.IMAGE_FORMAT_KEY in present:
    present[names.IMAGE_FORMAT_KEY].string_domain.value[:] = list(
        image_header.FORMATS)
  # Inline domains replace the named ones inference made.
  del schema.string_domain[:]
  for name, (low, high) in _RANGES.items():
    if name in present:
      domain = present[name].int_domain
      domain.min = low
      if high is not None:
        domain.max = high
  for name in PIXELS:
    if name in present:
      _curate_pixel_statistic(present[name])
      _compare(present[name], 'jensen_shannon_divergence',
               options.max_numeric_divergence, skew=False)
  for name in CATEGORICAL:
    if name in present:
      _compare(present[name], 'infinity_norm', options.max_category_distance)
  for name in NUMERIC:
    if name in present:
      _compare(present[name], 'jensen_shannon_divergence',
               options.max_numeric_divergence,
               skew=name not in _DRIFT_ONLY)
  return schema


def _curate_pixel_statistic(feature: schema_pb2.Feature) -> None:
  """Every bin in its domain, a bin per channel, in the sampled examples
  only: what inference makes of a small split, sampled whole, would refuse
  a larger one; drift says how far the bins' shares moved."""
  feature.ClearField('shape')
  feature.value_count.min = feature.value_count.max = len(
      pixel_statistics.CHANNELS)
  feature.presence.Clear()
  feature.presence.min_count = 1
  feature.string_domain.value[:] = _PIXEL_BINS[feature.name]


def added_features(kept: schema_pb2.Schema, train: Statistics,
                   options: DataValidationOptions) -> List[str]:
  """Adds to a kept schema, curated as a new one would have them, the
  features of STATISTICS_FEATURES it lacks and the data has; returns their
  names. A schema kept from before they were computed would otherwise
  refuse every later run (TFDV's 'New column')."""
  known = {f.name for f in kept.feature}
  new = [f for f in infer_schema(train, options).feature
         if f.name not in known and f.name in STATISTICS_FEATURES]
  kept.feature.extend(new)
  return [f.name for f in new]


def _class_names(train: Statistics) -> List[str]:
  """Every label_name value, from the rank histogram (top_values keeps 20)."""
  for feature in train.datasets[0].features:
    if feature.path.step == [names.LABEL_NAME_KEY]:
      buckets = feature.string_stats.rank_histogram.buckets
      return sorted(b.label for b in buckets)
  return []


def _compare(feature: schema_pb2.Feature, measure: str, threshold: float,
             skew: bool = True) -> None:
  comparators = [feature.drift_comparator]
  if skew:
    comparators.append(feature.skew_comparator)
  for comparator in comparators:
    getattr(comparator, measure).threshold = threshold


def validate(train: Statistics, test: Statistics, schema: schema_pb2.Schema,
             previous: Optional[Statistics]
            ) -> Dict[str, anomalies_pb2.Anomalies]:
  """Anomalies by split: train against the schema, the previous accepted
  statistics (drift) and the test split (skew, TFDV's 'serving'); test
  against the schema."""
  return {
      names.TRAIN_SPLIT: tfdv.validate_statistics(
          train, _comparable(schema, previous), previous_statistics=previous,
          serving_statistics=test),
      names.TEST_SPLIT: tfdv.validate_statistics(test, schema),
  }


def _comparable(schema: schema_pb2.Schema,
                previous: Optional[Statistics]) -> schema_pb2.Schema:
  """The schema without drift comparators of features the previous
  statistics lack (kept from before they were computed): TFDV would report
  'previous data missing'; nothing is compared, as on the first run."""
  if previous is None:
    return schema
  before = {'.'.join(f.path.step) or f.name
            for f in previous.datasets[0].features}
  comparable = schema_pb2.Schema()
  comparable.CopyFrom(schema)
  for feature in comparable.feature:
    if feature.name not in before:
      feature.ClearField('drift_comparator')
  return comparable


def describe(by_split: Dict[str, anomalies_pb2.Anomalies]
            ) -> List[Dict[str, str]]:
  """Each anomaly, with TFDV's own words: split, feature, what, and its
  description (what was expected and what was found)."""
  found = []
  for split, anomalies in by_split.items():
    for feature, info in sorted(anomalies.anomaly_info.items()):
      for reason in info.reason:
        found.append({'split': split, 'feature': feature,
                      'what': reason.short_description,
                      'description': reason.description})
    for reason in anomalies.dataset_anomaly_info.reason:
      found.append({'split': split, 'feature': '(dataset)',
                    'what': reason.short_description,
                    'description': reason.description})
  return found


def measurements(anomalies: anomalies_pb2.Anomalies) -> List[Dict[str, object]]:
  """Every drift and skew measured, anomalous or not, for the report."""
  rows = []
  for info in anomalies.drift_skew_info:
    feature = '.'.join(info.path.step)
    for kind, items in (('drift', info.drift_measurements),
                        ('skew', info.skew_measurements)):
      for m in items:
        rows.append({
            'feature': feature, 'kind': kind,
            'measure': anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(
                m.type),
            'value': m.value, 'threshold': m.threshold})
  return rows
