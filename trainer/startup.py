"""A training's settings checked when the command starts (imgcls train, run,
compile), not in the Trainer after the data has been read: the model class,
its options, the input shape, and the pretrained weights it needs."""
import argparse
import dataclasses

from imgcls.trainer import models
from imgcls.trainer.config import TrainingConfig


def check(config: TrainingConfig, args: argparse.Namespace,
          local: bool) -> TrainingConfig:
  """The config as the Trainer will use it, or a UserError now.

  `local`: the Trainer runs on this machine, so the files and downloads it
  needs are checked (and fetched) here; on Kubeflow they are its pod's.
  """
  cls = models.model_class(config.model_type)
  return dataclasses.replace(
      config,
      input_shape=cls.fit_input_shape(
          config.input_shape, given=args.input_shape is not None),
      model_options=cls.resolve_options(config.model_options, local))
