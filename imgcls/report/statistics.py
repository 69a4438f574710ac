"""What the report shows of data validation, read from the run's artifacts.

The distributions come from TFDV's statistics (StatisticsGen's train split,
and the previous accepted statistics that the DataValidator kept beside its
anomalies), the measurements from its Split-train/SchemaDiff.pb: a report
made later shows what that run compared, whatever was accepted since.
"""
import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from imgcls.components.data_validation import component, store
from imgcls.components.data_validation import schema as schema_lib
from imgcls.contract import names

Histogram = List[Tuple[float, float, float]]  # (low, high, count)


@dataclasses.dataclass
class Distributions:
  """One dataset's categorical counts and numeric histograms, by feature;
  `single_values`: each feature whose every example has the same value, with
  that value (a histogram of one bar says less than the value in words)."""
  counts: Dict[str, Dict[str, float]]
  histograms: Dict[str, Histogram]
  single_values: Dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Validation:
  current: Distributions  # the train split of this run
  previous: Optional[Distributions]  # the data last accepted before it
  measurements: List[Dict[str, object]]  # drift and skew, schema_lib's rows


def validation(statistics_uri: str, anomalies_uri: str) -> Validation:
  train = store.read_statistics(os.path.join(
      statistics_uri, f'Split-{names.TRAIN_SPLIT}', 'FeatureStats.pb'))
  previous_path = os.path.join(anomalies_uri, names.PREVIOUS_STATISTICS_FILE)
  previous = (distributions(store.read_statistics(previous_path))
              if tf.io.gfile.exists(previous_path) else None)
  diff_path = os.path.join(anomalies_uri, f'Split-{names.TRAIN_SPLIT}',
                           component.ANOMALIES_FILE)
  with tf.io.gfile.GFile(diff_path, 'rb') as f:
    anomalies = anomalies_pb2.Anomalies.FromString(f.read())
  return Validation(distributions(train), previous,
                    schema_lib.measurements(anomalies))


def distributions(statistics: statistics_pb2.DatasetFeatureStatisticsList
                 ) -> Distributions:
  counts, histograms, single = {}, {}, {}
  for feature in statistics.datasets[0].features:
    name = '.'.join(feature.path.step)
    if name in schema_lib.CATEGORICAL:
      counts[name] = {b.label: b.sample_count
                      for b in feature.string_stats.rank_histogram.buckets}
      if len(counts[name]) == 1:
        single[name] = next(iter(counts[name]))
    elif name in schema_lib.NUMERIC:
      histograms[name] = _standard_histogram(feature.num_stats)
      # TFDV's numeric statistics (statistics.proto, NumericStatistics).
      if feature.num_stats.min == feature.num_stats.max:
        single[name] = _number(feature.num_stats.min)
  return Distributions(counts, histograms, single)


def _standard_histogram(num_stats) -> Histogram:
  for histogram in num_stats.histograms:
    if histogram.type == statistics_pb2.Histogram.STANDARD:
      return [(b.low_value, b.high_value, b.sample_count)
              for b in histogram.buckets]
  return []


def _number(value: float) -> str:
  return str(int(value)) if value == int(value) else f'{value:g}'


def stated_facts(current: Distributions, previous: Optional[Distributions]
                ) -> Dict[str, Tuple[str, Optional[str]]]:
  """The image facts with one value in this run, and one in the data
  accepted before if there is any: feature -> (value, value before)."""
  return {
      name: (current.single_values[name],
             previous.single_values[name] if previous else None)
      for name in names.IMAGE_FACT_KEYS
      if name in current.single_values and (
          previous is None or name in previous.single_values)
  }


def plotted_facts(current: Distributions, previous: Optional[Distributions]
                 ) -> List[str]:
  """The image facts with more than one value, now or before: a plot each."""
  stated = stated_facts(current, previous)
  return [name for name in names.IMAGE_FACT_KEYS
          if name not in stated and (name in current.histograms or
                                     name in current.counts)]
