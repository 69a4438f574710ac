"""Training settings, in one place for `imgcls train`, `imgcls run` and run_fn.

The CLI builds its flags from these defaults; the pipeline passes them to the
Trainer as `custom_config`, so the standalone command and the TFX Trainer
train the same way from the same settings.
"""
import argparse
import dataclasses
from typing import Any, Dict, Tuple

from imgcls.contract import deployment, names
from imgcls.contract.errors import UserError

AUGMENT_CHOICES = ('none', 'default')
LR_SCHEDULE_CHOICES = ('constant', 'cosine')
CLASS_WEIGHT_CHOICES = ('none', 'balanced')


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  # The served model's name is the class's (kubernetes/params/params.env):
  # the default comes from there, so TF Serving reads where the Pusher writes.
  # Read when a config is made without one, never on import.
  model_type: str = dataclasses.field(default_factory=deployment.model_name)
  input_shape: Tuple[int, int, int] = (28, 28, 1)
  epochs: int = 10
  batch_size: int = 128
  learning_rate: float = 1e-3
  # Epochs without improvement of the validation loss before stopping.
  early_stopping_patience: int = 3
  # Decoded training data is cached in memory below this size, else streamed.
  cache_limit_mb: int = 2048
  # Architecture options passed to the model class, e.g. {'weights': None}.
  model_options: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # 'default': the model class's own training-time augmentation; 'none': off.
  augment: str = 'default'
  # 'cosine': a linear warmup over warmup_fraction of each stage's steps,
  # then cosine decay to zero at the stage's last epoch.
  lr_schedule: str = 'constant'
  warmup_fraction: float = 0.05
  label_smoothing: float = 0.0
  # 'balanced': each class weighs total / (classes * its count), from the
  # counts the ExampleGen (or the class-folder listing) recorded.
  class_weight: str = 'none'
  # A share of the training examples (picked by a hash of their path) held
  # out for early stopping; 0 validates on the test split instead.
  validation_fraction: float = 0.0
  # Where an unfinished training keeps its BackupAndRestore state, so that a
  # retry resumes; '' lets the caller choose (beside the model or pipeline).
  backup_root: str = ''

  def to_custom_config(self) -> Dict[str, Any]:
    """A JSON-serialisable dict, as TFX's custom_config must be."""
    config = dataclasses.asdict(self)
    config['input_shape'] = list(self.input_shape)
    return config

  def with_hyperparameters(self, values: Dict[str, Any]) -> 'TrainingConfig':
    """The config with a tuner's chosen values applied.

    `learning_rate` is the optimizer's; every other name is an option of the
    model class (an argument of its create_model_io), which is how a model
    class's search space reaches its layers.
    """
    options = dict(values)
    learning_rate = options.pop(names.LEARNING_RATE_HYPERPARAMETER,
                                self.learning_rate)
    return dataclasses.replace(
        self, learning_rate=float(learning_rate),
        model_options={**self.model_options, **options})

  @classmethod
  def from_custom_config(cls, config: Dict[str, Any]) -> 'TrainingConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in (config or {}).items() if k in known}
    if 'input_shape' in values:
      values['input_shape'] = tuple(values['input_shape'])
    return cls(**values)


def parse_input_shape(text: str) -> Tuple[int, int, int]:
  try:
    height, width, channels = (int(v) for v in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f'expected HEIGHT,WIDTH,CHANNELS such as 28,28,1, got {text!r}'
    ) from None
  return height, width, channels


def parse_model_option(text: str) -> Tuple[str, Any]:
  """KEY=VALUE; 'none' means None, so `--model-option weights=none` works."""
  key, sep, value = text.partition('=')
  if not sep or not key:
    raise argparse.ArgumentTypeError(f'expected KEY=VALUE, got {text!r}')
  return key, None if value.lower() == 'none' else value


def add_training_args(parser: argparse.ArgumentParser) -> None:
  """Adds the TrainingConfig flags, with its defaults, to a subcommand."""
  d = TrainingConfig(model_type='')  # the params file is read at run time
  parser.add_argument('--model-type',
                      help='LenetModel, ResnetModel, or my_pkg.my_module.'
                      'MyModel (a subclass of ImageClassifierModel); default '
                      'MODEL_NAME of the params file (kubernetes/params/'
                      'params.env, or $IMGCLS_PARAMS_FILE)')
  parser.add_argument('--input-shape', type=parse_input_shape,
                      metavar='H,W,C',
                      help='the size the model works at; default '
                      f'{",".join(map(str, d.input_shape))}, or the model '
                      "class's minimum size if larger (images are resized "
                      'up)')
  parser.add_argument('--epochs', type=int, default=d.epochs,
                      help=f'per training stage; default {d.epochs}')
  parser.add_argument('--batch-size', type=int, default=d.batch_size,
                      help=f'default {d.batch_size}')
  parser.add_argument('--learning-rate', type=float, default=d.learning_rate,
                      help=f'Adam; default {d.learning_rate}')
  parser.add_argument('--early-stopping-patience', type=int,
                      default=d.early_stopping_patience,
                      help='epochs without a better validation loss before '
                      f'stopping; default {d.early_stopping_patience}')
  parser.add_argument('--model-option', type=parse_model_option,
                      action='append', default=[], metavar='KEY=VALUE',
                      help='an option of the model class (repeatable), '
                      "e.g. ResnetModel's weights=imagenet (its default), "
                      'weights=/path/to/resnet50v2_notop.h5 or weights=none '
                      '(a random start); see docs/models.md')
  parser.add_argument('--augment', choices=AUGMENT_CHOICES, default=d.augment,
                      help="the model class's training-time augmentation "
                      f'(default) or none; default {d.augment}')
  parser.add_argument('--lr-schedule', choices=LR_SCHEDULE_CHOICES,
                      default=d.lr_schedule,
                      help='per training stage: constant, or cosine decay '
                      f'after a short warmup; default {d.lr_schedule}')
  parser.add_argument('--label-smoothing', type=float,
                      default=d.label_smoothing,
                      help=f'0 to <1; default {d.label_smoothing}')
  parser.add_argument('--class-weight', choices=CLASS_WEIGHT_CHOICES,
                      default=d.class_weight,
                      help='balanced weighs classes by the inverse of their '
                      f'training counts; default {d.class_weight}')
  parser.add_argument('--backup-root', default=d.backup_root,
                      help='where an unfinished training keeps its backup, '
                      'to resume from its last finished epoch when run '
                      'again; a path all retries see (on Kubeflow, a '
                      'mounted volume); default: beside the model '
                      '(imgcls train) or in the pipeline root (imgcls run)')
  parser.add_argument('--validation-fraction', type=float,
                      default=d.validation_fraction,
                      help='share of the training images held out for early '
                      'stopping; 0 validates on the test split; default '
                      f'{d.validation_fraction}')


def training_config_from_args(args: argparse.Namespace) -> TrainingConfig:
  config = TrainingConfig(
      # Without --model-type, the field's own default: the params file's.
      **({'model_type': args.model_type} if args.model_type else {}),
      input_shape=tuple(args.input_shape or TrainingConfig.input_shape),
      epochs=args.epochs,
      batch_size=args.batch_size,
      learning_rate=args.learning_rate,
      early_stopping_patience=args.early_stopping_patience,
      model_options=dict(args.model_option),
      augment=args.augment,
      lr_schedule=args.lr_schedule,
      label_smoothing=args.label_smoothing,
      class_weight=args.class_weight,
      validation_fraction=args.validation_fraction,
      backup_root=args.backup_root)
  if config.epochs < 1 or config.batch_size < 1:
    raise UserError('--epochs and --batch-size must be at least 1')
  if not 0 <= config.label_smoothing < 1:
    raise UserError(f'--label-smoothing must be in [0, 1), got '
                    f'{config.label_smoothing}')
  if not 0 <= config.validation_fraction < 0.5:
    raise UserError(f'--validation-fraction must be in [0, 0.5), got '
                    f'{config.validation_fraction}')
  return config
