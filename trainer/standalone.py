"""Training and evaluating straight from class folders, without a pipeline.

What the original train_model.py and eval_model.py scripts did; the TFX
pipeline does the same through its components.
"""
import dataclasses
import json
import logging
import os
import sys
from typing import Dict, List, Sequence

import tensorflow as tf

from imgcls.contract import names, saved_model
from imgcls.contract.errors import UserError
from imgcls.imagedata import class_folders, preprocessing
from imgcls.serving_dir import versions as model_versions
from imgcls.trainer import cluster, dataset, local_replicas, models, training
from imgcls.trainer.config import TrainingConfig

# Beside the versions; not an integer, so neither TF Serving nor the version
# lister takes it for one.
BACKUP_DIR = 'backup'


def train(train_dir: str, test_dir: str, model_dir: str,
          config: TrainingConfig) -> str:
  """Trains on train_dir, validates on test_dir (or on a held-out part of
  train_dir), and publishes the model as
  `<model_dir>/<ModelType>/<next integer version>`; returns that path.

  ModelCheckpoint writes the best model so far to `<model_dir>/<ModelType>/
  checkpoints/`; each checkpoint is a servable SavedModel. An interrupted
  run, started again with the same command, resumes from its last finished
  epoch (the backup in `<model_dir>/<ModelType>/backup/`). With
  config.workers above 1, the training runs as that many processes here
  (trainer/local_replicas.py), each a replica of this function.
  """
  if config.workers > 1 and not cluster.replica().several:
    return _train_as_replicas(train_dir, test_dir, model_dir, config)
  where = training.devices()  # first: see training.devices
  train_split, test_split = class_folders.read_train_test(train_dir, test_dir)
  model = training.build_model(config, train_split.class_names, where)
  inputs = dataset.files_inputs(train_split, test_split, config,
                                where.global_batch(config.batch_size),
                                where.shard)
  base_dir = os.path.join(model_dir, type(model).__name__)
  checkpoint = tf.keras.callbacks.ModelCheckpoint(
      os.path.join(base_dir, 'checkpoints', 'best'), monitor='val_loss',
      save_best_only=True)
  backup = training.Backup(os.path.join(
      config.backup_root or os.path.join(base_dir, BACKUP_DIR),
      training.backup_key(os.path.abspath(train_dir),
                          os.path.abspath(test_dir),
                          config.to_custom_config())), where.replica)
  training.fit(model, config, inputs, backup, [checkpoint], where)
  path = _publish(where, base_dir, model)
  backup.remove()
  training.wait_for_all(where)
  return path


def _publish(where: training.Devices, base_dir: str, model) -> str:
  """The new version's path; '' on a replica other than the chief, which
  saves all the same (training.save_on_every_replica) but keeps nothing."""
  if not where.replica.is_chief:
    training.save_on_every_replica(where.replica, base_dir, model.save)
    return ''
  return os.path.join(base_dir,
                      str(model_versions.publish(base_dir, model.save)))


def _train_as_replicas(train_dir: str, test_dir: str, model_dir: str,
                       config: TrainingConfig) -> str:
  """Returns the newest version once the replicas have finished: the one
  their chief published."""
  local_replicas.run(
      [sys.executable, '-m', 'imgcls.trainer.standalone',
       json.dumps([train_dir, test_dir, model_dir,
                   config.to_custom_config()])], config.workers)
  return model_versions.latest_version_dir(os.path.join(
      model_dir, models.model_class(config.model_type).__name__))


@dataclasses.dataclass
class SignatureResult:
  accuracy: float
  per_class: Dict[str, float]
  predictions: List[str]


@dataclasses.dataclass
class Evaluation:
  count: int
  skipped: int
  by_signature: Dict[str, SignatureResult]
  agreement: float  # share of images on which both signatures agree


def evaluate(model_path: str, test_dir: str, batch_size: int = 256
            ) -> Evaluation:
  """Accuracy overall and per class through serving_bytes and serving_default,
  and whether the two agree, on the images of test_dir."""
  model = saved_model.SavedClassifier(
      model_versions.check_saved_model(model_path))
  split = class_folders.read_split(test_dir)
  unknown = sorted(set(split.class_names) - set(model.class_names))
  if unknown:
    raise UserError(f'{test_dir}: classes {unknown} are not among the '
                    f"model's classes {model.class_names}")
  truth = [f.class_name for f in split.files]
  by_bytes: List[str] = []
  by_pixels: List[str] = []
  for start in range(0, len(split.files), batch_size):
    encoded = [_read(f.path) for f in split.files[start:start + batch_size]]
    by_bytes += [n.decode() for n in model.predict_bytes(encoded)[
        names.CLASS_NAME_OUTPUT]]
    by_pixels += [n.decode() for n in model.predict_pixels(
        preprocessing.client_pixels(encoded, model.pixel_shape))[
            names.CLASS_NAME_OUTPUT]]
  agree = sum(a == b for a, b in zip(by_bytes, by_pixels))
  return Evaluation(
      count=len(truth), skipped=len(split.skipped),
      by_signature={
          names.SERVING_BYTES: _score(truth, by_bytes, split.class_names),
          names.SERVING_DEFAULT: _score(truth, by_pixels, split.class_names),
      },
      agreement=agree / len(truth))


def _read(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def _score(truth: Sequence[str], predicted: List[str],
           class_names: Sequence[str]) -> SignatureResult:
  per_class = {}
  for name in class_names:
    hits = [p == t for t, p in zip(truth, predicted) if t == name]
    per_class[name] = sum(hits) / len(hits)
  correct = sum(t == p for t, p in zip(truth, predicted))
  return SignatureResult(correct / len(truth), per_class, predicted)


def _replica_main(argv: Sequence[str]) -> None:
  """One replica of `train`: the arguments as _train_as_replicas gives them.
  Its lines go to the launcher, which prefixes and passes them on."""
  logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
  train_dir, test_dir, model_dir, config = json.loads(argv[0])
  train(train_dir, test_dir, model_dir,
        TrainingConfig.from_custom_config(config))


if __name__ == '__main__':
  _replica_main(sys.argv[1:])
