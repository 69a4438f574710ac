"""The data validation gate's settings, carried into its components as
parameters.

No TFX or TFDV imports: the CLI builds its flags from these defaults, and
`imgcls --help` should not wait for them to load.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class DataValidationOptions:
  # Where the curated schema and the last accepted statistics live, across
  # runs; '' means <data root>/schema (PipelineConfig resolves it).
  schema_dir: str = ''
  # Let anomalous data through to training, deliberately (recorded as such).
  accept_anomalies: bool = False
  # Thresholds written into a newly inferred schema, for drift (against the
  # last accepted data) and skew (train against test). L-infinity distance of
  # the categorical features' value shares (label_name, image_format): 0.1
  # is one class or format gaining or losing ten points of share.
  max_category_distance: float = 0.1
  # Jensen-Shannon divergence of the numeric image facts' histograms (width,
  # height, channels, file size), 0 for the same distribution, 1 for disjoint.
  max_numeric_divergence: float = 0.1
