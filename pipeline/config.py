"""Pipeline settings, in one place; the CLI builds its flags from these
defaults."""
import argparse
import dataclasses
import os
from typing import Optional, Tuple

from imgcls.components.data_validation.options import DataValidationOptions
from imgcls.components.image_example_gen.options import ExampleGenOptions
from imgcls.contract import names, storage
from imgcls.contract.errors import UserError
from imgcls.trainer import config as training_config
from imgcls.trainer.config import TrainingConfig

# Beam's DirectRunner in one process: a component starts in under 2 s, against
# about 8 s in multi_processing mode, which pays off only for large data.
# Named FnApiRunner, the engine the DirectRunner ends up on anyway: Beam 2.77's
# DirectRunner is SwitchingDirectRunner (apache_beam/runners/direct/
# direct_runner.py), which first tries the PrismRunner, downloading its binary
# from GitHub at run time, and falls back only when that fails.
#
# --sdk_container_image names no image: the FnApiRunner in_memory runs its
# workers in this process (apache_beam/runners/portability/fn_api_runner/
# fn_runner.py, FnApiRunner.run_pipeline: an embedded environment; the option
# is never read).
# It is there because any such flag stops every Beam component from first
# copying the installed TFX (59 MB) to a temporary directory and running
# `setup.py sdist` on it, to stage for remote workers that do not exist here
# (tfx/dsl/components/base/base_beam_executor.py, BaseBeamExecutor.__init__;
# tfx/utils/dependency_utils.py, make_beam_dependency_flags): seconds per
# Beam component, and 59 MB left in /tmp each time.
DEFAULT_BEAM_ARGS = ('--runner=FnApiRunner', '--direct_running_mode=in_memory',
                     '--sdk_container_image=none:workers-run-in-process')
# Under the data root, beside train/, test/ or span-<N>/, which the layout
# reads; nothing else there is read as data.
DEFAULT_SCHEMA_DIR = 'schema'


@dataclasses.dataclass(frozen=True)
class ServingCheck:
  """`--verify-serving`: after a push, the server at `host` must load the new
  version within `timeout_s` and answer real test images over REST and gRPC
  as the SavedModel does in-process; otherwise the push is rolled back."""
  host: str
  rest_port: int = names.REST_PORT
  grpc_port: int = names.GRPC_PORT
  timeout_s: float = 120.0


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  data_root: str
  serving_dir: str
  pipeline_root: str
  pipeline_name: str = 'imgcls'
  training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
  example_gen: ExampleGenOptions = ExampleGenOptions()
  data_validation: DataValidationOptions = DataValidationOptions()
  # The Evaluator's gate: accuracy on the test split must reach min_accuracy
  # and may not fall more than max_accuracy_drop below the served model's.
  min_accuracy: float = 0.9
  max_accuracy_drop: float = 0.01
  # Off only to publish a new label set on purpose: the served model's
  # accuracy is no yardstick for a model with other classes.
  compare_with_baseline: bool = True
  # Versions the Pusher keeps in the serving directory (its declared
  # execution parameter); the newest is never pruned.
  keep_versions: int = 5
  # None: a push is not checked against a server (clients.verify.verify_push).
  serving_check: Optional[ServingCheck] = None
  # TFX's Tuner before the Trainer: a KerasTuner random search of this many
  # trials over the model class's search_space(), each trained as the
  # Trainer trains; the Trainer then uses the best values.
  tune: bool = False
  tune_trials: int = 10
  contract_sample_size: int = 32
  beam_args: Tuple[str, ...] = DEFAULT_BEAM_ARGS
  enable_cache: bool = True

  def __post_init__(self):
    """The checks of the settings that have them, wherever a config is
    made (flags, retrain, tests)."""
    if self.keep_versions < 1:
      raise UserError(f'--keep-versions {self.keep_versions}: at least 1 '
                      'version is kept (the newest is never pruned)')

  @property
  def model_name(self) -> str:
    """The served name: the model class name, also for dotted paths."""
    return self.training.model_type.rpartition('.')[2]

  @property
  def model_base_path(self) -> str:
    return os.path.join(self.serving_dir, self.model_name)

  @property
  def schema_dir(self) -> str:
    """The data's schema lives with the data: on Kubeflow too, where the
    data PVC is mounted and the pipeline root is an object store."""
    return (self.data_validation.schema_dir or
            os.path.join(self.data_root, DEFAULT_SCHEMA_DIR))

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.pipeline_root, names.METADATA_FILE)


def add_pipeline_args(parser: argparse.ArgumentParser,
                      paths_required: bool = True) -> None:
  """The PipelineConfig flags (and TrainingConfig's), with their defaults."""
  d = PipelineConfig('', '', '', training=TrainingConfig(model_type=''))
  parser.add_argument('--data-root', required=paths_required,
                      help='<root>/train/<class>/*, <root>/test/<class>/*, '
                      'or <root>/span-<N>/...')
  parser.add_argument('--serving-dir', required=paths_required,
                      help='versions go to <serving-dir>/<ModelName>/<N>')
  parser.add_argument('--pipeline-root',
                      help='pipeline outputs and the MLMD store, a local '
                      'folder (default: <data-root>/../pipeline, needed with '
                      'a gs:// data root)')
  parser.add_argument('--pipeline-name', default=d.pipeline_name)
  training_config.add_training_args(parser)
  parser.add_argument('--span-window', '--window', type=int,
                      default=d.example_gen.span_window,
                      help='train on the newest N spans; default '
                      f'{d.example_gen.span_window}')
  parser.add_argument('--max-bad-fraction', type=float,
                      default=d.example_gen.max_bad_fraction,
                      help='fail when more than this share of the files is '
                      f'unreadable; default {d.example_gen.max_bad_fraction}')
  parser.add_argument('--max-image-pixels', type=int,
                      default=d.example_gen.max_image_pixels,
                      help='skip and list images whose header declares more '
                      'pixels (width x height); at most, and by default, '
                      f'{d.example_gen.max_image_pixels:,}, the most the '
                      'model decodes')
  dv = d.data_validation
  parser.add_argument('--schema-dir', default=dv.schema_dir,
                      help='the kept schema (schema.pbtxt, inferred on the '
                      'first run, then edited by you) and the statistics of '
                      'the data last accepted; default <data-root>/'
                      f'{DEFAULT_SCHEMA_DIR}')
  parser.add_argument('--accept-anomalies', action='store_true',
                      help='train even when the data has anomalies (drift, '
                      'skew, or against the schema); they are still listed')
  parser.add_argument('--max-category-distance', type=float,
                      default=dv.max_category_distance,
                      help='L-infinity drift/skew threshold of label_name and '
                      'image_format, for a newly inferred schema; default '
                      f'{dv.max_category_distance}')
  parser.add_argument('--max-numeric-divergence', type=float,
                      default=dv.max_numeric_divergence,
                      help='Jensen-Shannon drift/skew threshold of the image '
                      'sizes, channels and file sizes, for a newly inferred '
                      f'schema; default {dv.max_numeric_divergence}')
  parser.add_argument('--min-accuracy', type=float, default=d.min_accuracy,
                      help='blessing needs this test accuracy; default '
                      f'{d.min_accuracy}')
  parser.add_argument('--max-accuracy-drop', type=float,
                      default=d.max_accuracy_drop,
                      help='and no larger drop against the served model; '
                      f'default {d.max_accuracy_drop}')
  parser.add_argument('--no-baseline', dest='compare_with_baseline',
                      action='store_false',
                      help='judge by --min-accuracy alone, not against the '
                      'served model (for a new label set)')
  parser.add_argument('--tune', action='store_true',
                      help="search the model class's hyperparameters with "
                      "TFX's Tuner (KerasTuner) first; the Trainer uses the "
                      'best')
  parser.add_argument('--tune-trials', type=int, default=d.tune_trials,
                      help=f'trials of --tune; default {d.tune_trials}')
  parser.add_argument('--keep-versions', type=int, default=d.keep_versions,
                      help=f'versions kept in the serving directory; default '
                      f'{d.keep_versions}')
  check = ServingCheck('')
  parser.add_argument('--verify-serving', metavar='HOST',
                      help='after a push, wait until the model server at HOST '
                      'has the new version AVAILABLE and check its answers '
                      'to test images over REST and gRPC against the model '
                      'in-process; roll the push back and exit non-zero if '
                      'they differ or it never loads')
  parser.add_argument('--rest-port', type=int, default=check.rest_port,
                      help=f'with --verify-serving; default {check.rest_port}')
  parser.add_argument('--grpc-port', type=int, default=check.grpc_port,
                      help=f'with --verify-serving; default {check.grpc_port}')
  parser.add_argument('--verify-timeout', type=float, default=check.timeout_s,
                      metavar='S',
                      help='with --verify-serving: seconds to wait for the '
                      f'version to be AVAILABLE; default {check.timeout_s:g}')
  parser.add_argument('--beam-arg', action='append', dest='beam_args',
                      metavar='ARG',
                      help='a Beam pipeline argument (repeatable), replacing '
                      f'the default {" ".join(DEFAULT_BEAM_ARGS)}; e.g. '
                      '--beam-arg=--runner=FlinkRunner')


def pipeline_config_from_args(args: argparse.Namespace) -> PipelineConfig:
  data_root = storage.absolute(args.data_root)
  pipeline_root = os.path.abspath(
      _local_pipeline_root(args.pipeline_root, data_root))
  return PipelineConfig(
      data_root=data_root,
      serving_dir=storage.absolute(args.serving_dir),
      pipeline_root=pipeline_root,
      pipeline_name=args.pipeline_name,
      training=training_config.training_config_from_args(args),
      example_gen=ExampleGenOptions(span_window=args.span_window,
                                    max_bad_fraction=args.max_bad_fraction,
                                    max_image_pixels=args.max_image_pixels),
      data_validation=DataValidationOptions(
          schema_dir=os.path.abspath(args.schema_dir) if args.schema_dir
          else '',
          accept_anomalies=args.accept_anomalies,
          max_category_distance=args.max_category_distance,
          max_numeric_divergence=args.max_numeric_divergence),
      min_accuracy=args.min_accuracy,
      max_accuracy_drop=args.max_accuracy_drop,
      compare_with_baseline=args.compare_with_baseline,
      keep_versions=args.keep_versions,
      serving_check=_serving_check(args),
      tune=args.tune,
      tune_trials=args.tune_trials,
      beam_args=tuple(args.beam_args or DEFAULT_BEAM_ARGS))


def _local_pipeline_root(pipeline_root: Optional[str], data_root: str) -> str:
  """--pipeline-root, or the data root's sibling: a local folder, since the
  MLMD store in it is a SQLite file."""
  if pipeline_root and storage.is_remote(pipeline_root):
    raise UserError(f'--pipeline-root {pipeline_root}: must be a local folder '
                    '(it holds the SQLite metadata store); the data root and '
                    'the serving directory may be gs://')
  if not pipeline_root and storage.is_remote(data_root):
    raise UserError(f'--data-root {data_root}: in a bucket, so --pipeline-root '
                    'must name a local folder for the pipeline outputs and '
                    'the metadata store')
  return pipeline_root or os.path.join(os.path.dirname(data_root), 'pipeline')


def checked_at_start(config: PipelineConfig, args: argparse.Namespace,
                     local: bool) -> PipelineConfig:
  """The config with its training settings checked before any component
  runs (trainer/startup.py); `local`: the Trainer runs on this machine."""
  from imgcls.trainer import startup
  return dataclasses.replace(
      config, training=startup.check(config.training, args, local))


def _serving_check(args: argparse.Namespace) -> Optional[ServingCheck]:
  if not args.verify_serving:
    return None
  for flag, port in (('--rest-port', args.rest_port),
                     ('--grpc-port', args.grpc_port)):
    if not 0 < port <= 65535:
      raise UserError(f'{flag} {port} is not a port (1..65535)')
  if not args.verify_timeout > 0:
    raise UserError(f'--verify-timeout {args.verify_timeout:g} must be '
                    'positive')
  return ServingCheck(args.verify_serving, args.rest_port, args.grpc_port,
                      args.verify_timeout)
