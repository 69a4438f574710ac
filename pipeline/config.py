"""Pipeline settings, in one place: each is declared once
(imgcls/contract/settings.py), and the CLI builds its flags from the
declarations."""
import argparse
import dataclasses
import os
from typing import Optional, Tuple

from imgcls.components.data_validation import options as validation_options
from imgcls.components.data_validation.options import DataValidationOptions
from imgcls.components.image_example_gen.options import ExampleGenOptions
from imgcls.contract import names, settings, storage
from imgcls.contract.errors import UserError
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


_PORT = settings.in_range(1, 65535)


@dataclasses.dataclass(frozen=True)
class ServingCheck:
  """`--verify-serving`: after a push, the server at `host` must load the new
  version within `timeout_s` and answer real test images over REST and gRPC
  as the SavedModel does in-process; otherwise the push is rolled back.

  Its settings are checked where the flags are read (_serving_check), not on
  every instance: the check of an address that never resolved is made with
  no wait (clients.verify.verify_push_at_every_address)."""
  host: str
  rest_port: int = settings.setting(names.REST_PORT, 'with --verify-serving',
                                    check=_PORT)
  grpc_port: int = settings.setting(names.GRPC_PORT, 'with --verify-serving',
                                    check=_PORT)
  timeout_s: float = settings.setting(
      120.0, 'with --verify-serving: seconds to wait for the version to be '
      'AVAILABLE', flag='--verify-timeout', metavar='S',
      check=settings.in_range(above=0))


@settings.settings_class
class PipelineConfig:
  data_root: str
  serving_dir: str
  pipeline_root: str
  pipeline_name: str = settings.setting('imgcls')
  training: TrainingConfig = settings.group(TrainingConfig)
  example_gen: ExampleGenOptions = settings.group(ExampleGenOptions)
  data_validation: DataValidationOptions = settings.group(
      DataValidationOptions)
  # The Evaluator's gate: accuracy on the test split must reach min_accuracy
  # and may not fall more than max_accuracy_drop below the served model's.
  min_accuracy: float = settings.setting(
      0.9, 'blessing needs this test accuracy')
  max_accuracy_drop: float = settings.setting(
      0.01, 'and no larger drop against the served model')
  # Off only to publish a new label set on purpose: the served model's
  # accuracy is no yardstick for a model with other classes.
  compare_with_baseline: bool = settings.setting(
      True, 'judge by --min-accuracy alone, not against the served model '
      '(for a new label set)', flag='--no-baseline')
  # TFX's Tuner before the Trainer: a KerasTuner random search of this many
  # trials over the model class's search_space(), each trained as the
  # Trainer trains; the Trainer then uses the best values.
  tune: bool = settings.setting(
      False, "search the model class's hyperparameters with TFX's Tuner "
      '(KerasTuner) first; the Trainer uses the best')
  tune_trials: int = settings.setting(10, 'trials of --tune')
  # The Pusher's declared execution parameter.
  keep_versions: int = settings.setting(
      5, 'versions kept in the serving directory',
      check=settings.in_range(1, why='the newest is never pruned'))
  # None: a push is not checked against a server (clients.verify.verify_push).
  serving_check: Optional[ServingCheck] = None
  contract_sample_size: int = settings.setting(
      32, 'test images the contract check compares the signatures on',
      flag=None)
  beam_args: Tuple[str, ...] = settings.setting(
      DEFAULT_BEAM_ARGS, 'a Beam pipeline argument (repeatable), replacing '
      'the default; e.g. --beam-arg=--runner=FlinkRunner', flag='--beam-arg',
      metavar='ARG', repeated=True, convert=tuple,
      shown_default=' '.join(DEFAULT_BEAM_ARGS))
  enable_cache: bool = settings.setting(
      True, "TFX's cache of unchanged steps", flag=None)

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
            os.path.join(self.data_root,
                         validation_options.DEFAULT_SCHEMA_DIR))

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.pipeline_root, names.METADATA_FILE)


def add_pipeline_args(parser: argparse.ArgumentParser,
                      paths_required: bool = True) -> None:
  """The PipelineConfig flags (and those of its groups), with their
  defaults."""
  parser.add_argument('--data-root', required=paths_required,
                      help='<root>/train/<class>/*, <root>/test/<class>/*, '
                      'or <root>/span-<N>/...')
  parser.add_argument('--serving-dir', required=paths_required,
                      help='versions go to <serving-dir>/<ModelName>/<N>')
  parser.add_argument('--pipeline-root',
                      help='pipeline outputs and the MLMD store, a local '
                      'folder (default: <data-root>/../pipeline, needed with '
                      'a gs:// data root)')
  settings.add_flags(parser, PipelineConfig)
  parser.add_argument('--verify-serving', metavar='HOST',
                      help='after a push, wait until the model server at HOST '
                      'has the new version AVAILABLE and check its answers '
                      'to test images over REST and gRPC against the model '
                      'in-process; roll the push back and exit non-zero if '
                      'they differ or it never loads')
  settings.add_flags(parser, ServingCheck)


def pipeline_config_from_args(args: argparse.Namespace) -> PipelineConfig:
  data_root = storage.check_scheme(storage.absolute(args.data_root),
                                   '--data-root')
  pipeline_root = os.path.abspath(
      _local_pipeline_root(args.pipeline_root, data_root))
  return settings.from_args(
      PipelineConfig, args, data_root=data_root,
      serving_dir=storage.check_scheme(storage.absolute(args.serving_dir),
                                       '--serving-dir'),
      pipeline_root=pipeline_root, serving_check=_serving_check(args))


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
  runs (trainer/startup.py); `local`: the Trainer runs on this machine,
  and so do the reads and writes of the data root and serving directory,
  whose buckets must answer here."""
  from imgcls.trainer import startup
  if local:
    storage.check_reachable(config.data_root, '--data-root')
    storage.check_reachable(config.serving_dir, '--serving-dir')
  return dataclasses.replace(
      config, training=startup.check(config.training, args, local))


def _serving_check(args: argparse.Namespace) -> Optional[ServingCheck]:
  if not args.verify_serving:
    return None
  check = settings.from_args(ServingCheck, args, host=args.verify_serving)
  settings.check(check)
  return check
