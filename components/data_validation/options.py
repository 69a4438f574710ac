"""The data validation gate's settings, carried into its components as one
JSON parameter (`to_parameter`, `from_parameter`).

No TFX or TFDV imports: the CLI builds its flags from these declarations,
and `imgcls --help` should not wait for them to load.
"""
import json

from imgcls.contract import settings

# Under the data root, beside train/, test/ or span-<N>/, which the layout
# reads; nothing else there is read as data.
DEFAULT_SCHEMA_DIR = 'schema'


@settings.settings_class
class DataValidationOptions:
  # Where the curated schema and the last accepted statistics live, across
  # runs; '' means <data root>/schema (PipelineConfig resolves it).
  schema_dir: str = settings.setting(
      '', 'the kept schema (schema.pbtxt, inferred on the first run, then '
      'edited by you) and the statistics of the data last accepted',
      shown_default=f'<data-root>/{DEFAULT_SCHEMA_DIR}',
      convert=settings.absolute_path)
  # Recorded as such in the run's record.
  accept_anomalies: bool = settings.setting(
      False, 'train even when the data has anomalies (drift, skew, or '
      'against the schema); they are still listed')
  # Thresholds written into a newly inferred schema, for drift (against the
  # last accepted data) and skew (train against test). 0.1 is one class or
  # format gaining or losing ten points of share.
  max_category_distance: float = settings.setting(
      0.1, 'L-infinity drift/skew threshold of label_name and image_format, '
      'for a newly inferred schema')
  # 0 for the same distribution, 1 for disjoint ones.
  max_numeric_divergence: float = settings.setting(
      0.1, 'Jensen-Shannon drift/skew threshold of the image sizes, channels, '
      'file sizes and pixel statistics, for a newly inferred schema')

  def to_parameter(self) -> str:
    return json.dumps(settings.to_json(self), sort_keys=True)

  @classmethod
  def from_parameter(cls, text: str) -> 'DataValidationOptions':
    return settings.from_json(cls, json.loads(text))
