"""Training settings, in one place for `imgcls train`, `imgcls run` and run_fn.

Each is declared once (imgcls/contract/settings.py): the CLI builds its flags
from the declarations, and the pipeline passes the values to the Trainer as
`custom_config`, so the standalone command and the TFX Trainer
train the same way from the same settings.
"""
import argparse
import dataclasses
from typing import Any, Dict, Tuple

from imgcls.contract import deployment, names, settings
from imgcls.contract.errors import UserError

AUGMENT_CHOICES = ('none', 'default')
LR_SCHEDULE_CHOICES = ('constant', 'cosine')
CLASS_WEIGHT_CHOICES = ('none', 'balanced')
DEFAULT_INPUT_SHAPE = (28, 28, 1)


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


@settings.settings_class
class TrainingConfig:
  # The served model's name is the class's (kubernetes/params/params.env):
  # the default comes from there, so TF Serving reads where the Pusher writes.
  # Read when a config is made without one, never on import.
  model_type: str = settings.setting(
      default_factory=deployment.model_name,
      help='LenetModel, ResnetModel, or my_pkg.my_module.MyModel (a subclass '
      'of ImageClassifierModel)', shown_default='MODEL_NAME of the params '
      'file (kubernetes/params/params.env, or $IMGCLS_PARAMS_FILE)')
  # Without the flag, trainer.startup grows it to the model class's minimum.
  input_shape: Tuple[int, int, int] = settings.setting(
      DEFAULT_INPUT_SHAPE, 'the size the model works at',
      parse=parse_input_shape, metavar='H,W,C',
      shown_default=f'{",".join(map(str, DEFAULT_INPUT_SHAPE))}, or the '
      "model class's minimum size if larger (images are resized up)")
  epochs: int = settings.setting(10, 'per training stage',
                                 check=settings.in_range(1))
  batch_size: int = settings.setting(128, check=settings.in_range(1))
  learning_rate: float = settings.setting(1e-3, 'Adam')
  early_stopping_patience: int = settings.setting(
      3, 'epochs without a better validation loss before stopping')
  cache_limit_mb: int = settings.setting(
      2048, 'decoded training data is cached in memory below this size, '
      'else streamed', flag=None)
  # Passed to the model class, e.g. {'weights': None}.
  model_options: Dict[str, Any] = settings.setting(
      default_factory=dict, help='an option of the model class (repeatable), '
      "e.g. ResnetModel's weights=imagenet (its default), "
      'weights=/path/to/resnet50v2_notop.h5 or weights=none (a random '
      'start); see docs/models.md', flag='--model-option',
      metavar='KEY=VALUE', parse=parse_model_option, repeated=True,
      convert=dict)
  augment: str = settings.setting(
      'default', "the model class's training-time augmentation (default) or "
      'none', choices=AUGMENT_CHOICES)
  # 'cosine': a linear warmup over warmup_fraction of each stage's steps,
  # then cosine decay to zero at the stage's last epoch.
  lr_schedule: str = settings.setting(
      'constant', 'per training stage: constant, or cosine decay after a '
      'short warmup', choices=LR_SCHEDULE_CHOICES)
  warmup_fraction: float = settings.setting(
      0.05, "the share of each stage's steps that --lr-schedule cosine warms "
      'up over', flag=None)
  label_smoothing: float = settings.setting(
      0.0, '0 to <1', check=settings.in_range(0, below=1))
  # 'balanced': each class weighs total / (classes * its count), from the
  # counts the ExampleGen (or the class-folder listing) recorded.
  class_weight: str = settings.setting(
      'none', 'balanced weighs classes by the inverse of their training '
      'counts', choices=CLASS_WEIGHT_CHOICES)
  # Examples are picked by a hash of their path.
  validation_fraction: float = settings.setting(
      0.0, 'share of the training images held out for early stopping; 0 '
      'validates on the test split', check=settings.in_range(0, below=0.5))
  # So that a retry resumes; '' lets the caller choose.
  backup_root: str = settings.setting(
      '', 'where an unfinished training keeps its backup, to resume from its '
      'last finished epoch when run again; a path all retries see (on '
      'Kubeflow, a mounted volume)', shown_default='beside the model (imgcls '
      'train) or in the pipeline root (imgcls run)')
  # Replicas of one training under MultiWorkerMirroredStrategy
  # (trainer/executor.py, trainer/local_replicas.py).
  workers: int = settings.setting(
      1, 'train as this many replicas: processes on this machine (imgcls '
      'run, train), pods on Kubeflow (imgcls compile); they split each '
      'batch, so the steps and the learning rate stay those of one',
      check=settings.in_range(1))

  def __post_init__(self):
    if self.batch_size < self.workers:
      raise UserError(f'--batch-size {self.batch_size}: at least --workers '
                      f'({self.workers}), since each replica takes a share '
                      'of every batch')

  def to_custom_config(self) -> Dict[str, Any]:
    """A JSON-serialisable dict, as TFX's custom_config must be."""
    return settings.to_json(self)

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
    """The Trainer's and the Tuner's reader; the Tuner's custom_config also
    holds its number of trials, which is no training setting."""
    return settings.from_json(cls, config)
