"""`imgcls train`, `imgcls evaluate` and `imgcls predict`."""
import argparse
import os

from imgcls.contract import settings
from imgcls.contract.errors import UserError
from imgcls.trainer.config import TrainingConfig


def register(subparsers) -> None:
  train = subparsers.add_parser(
      'train', help='train from class folders without a pipeline',
      description='Trains with early stopping and a ModelCheckpoint, then '
      'saves to <model-dir>/<ModelType>/<next integer version>.')
  train.add_argument('--train-dir', required=True)
  train.add_argument('--test-dir', required=True)
  train.add_argument('--model-dir', required=True)
  settings.add_flags(train, TrainingConfig)
  train.set_defaults(handler=_train)

  evaluate = subparsers.add_parser(
      'evaluate', help='accuracy of a SavedModel on a test folder, through '
      'both predictors')
  evaluate.add_argument('--test-dir', required=True)
  evaluate.add_argument('--model-path', required=True,
                        help='a SavedModel directory (a version)')
  evaluate.add_argument('--batch-size', type=int, default=256)
  evaluate.set_defaults(handler=_evaluate)

  predict = subparsers.add_parser(
      'predict', help='classify image files with a SavedModel')
  source = predict.add_mutually_exclusive_group(required=True)
  source.add_argument('--model-path', help='a SavedModel directory')
  source.add_argument('--model-base-path',
                      help='a directory of integer versions; the newest is '
                      'used, as TF Serving would')
  predict.add_argument('images', nargs='+',
                       help='image files, or directories of them')
  predict.set_defaults(handler=_predict)


def _train(args: argparse.Namespace) -> int:
  config = settings.from_args(TrainingConfig, args)
  # TensorFlow loads inside the command's console (imgcls/cli.py), where
  # what it prints is logged.
  from imgcls.trainer import standalone, startup
  config = startup.check(config, args, local=True)
  path = standalone.train(args.train_dir, args.test_dir, args.model_dir,
                          config)
  print(f'saved model: {path}')
  return 0


def _evaluate(args: argparse.Namespace) -> int:
  from imgcls.trainer import standalone
  result = standalone.evaluate(args.model_path, args.test_dir,
                               args.batch_size)
  print(f'{result.count} test images ({result.skipped} skipped)')
  for signature, scores in result.by_signature.items():
    print(f'{signature}: accuracy {scores.accuracy:.4f}')
    for name, accuracy in scores.per_class.items():
      print(f'  {name:>12}: {accuracy:.4f}')
  verdict = 'agree' if result.agreement == 1 else 'DISAGREE'
  print(f'serving_bytes and serving_default {verdict} on '
        f'{result.agreement:.2%} of the images')
  return 0


def _predict(args: argparse.Namespace) -> int:
  from imgcls.contract import saved_model, storage
  from imgcls.serving_dir import versions as model_versions
  storage.check_reachable(*((args.model_path, '--model-path')
                            if args.model_path else
                            (args.model_base_path, '--model-base-path')))
  path = args.model_path or model_versions.latest_version_dir(
      args.model_base_path)
  if not path:
    raise UserError(f'{args.model_base_path}: no integer version directories')
  model_versions.check_saved_model(path)
  files = _expand(args.images)
  encoded = [_read_image(f) for f in files]
  model = saved_model.SavedClassifier(path)
  outputs = model.predict_bytes(encoded)
  print(f'model: {path}')
  for f, name, probs in zip(files, outputs['class_name'],
                            outputs['probabilities']):
    print(f'{f}: {name.decode()} ({probs.max():.3f})')
  return 0


def _read_image(path: str) -> bytes:
  from imgcls.imagedata import class_folders
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise UserError(f'{path}: cannot read it: {e.strerror or e}') from None
  problem = class_folders.image_problem(data)
  if problem:
    raise UserError(f'{path}: {problem}')
  return data


def _expand(paths):
  """The files named, and those of the folders named; what else a folder
  holds (a subfolder, a broken link) is skipped, and said."""
  files = []
  for path in paths:
    if os.path.isdir(path):
      files += _files_of(path)
    elif os.path.isfile(path):
      files.append(path)
    else:
      raise UserError(f'{path}: no such file or directory')
  if not files:
    raise UserError(f'no image files in {", ".join(paths)}')
  return files


def _files_of(folder: str):
  from imgcls.contract import progress
  files = []
  for name in sorted(n for n in os.listdir(folder) if not n.startswith('.')):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      files.append(path)
    else:
      progress.warn('%s: skipped, %s', path, _not_a_file(path))
  return files


def _not_a_file(path: str) -> str:
  if os.path.isdir(path):
    return 'a folder (folders are not searched)'
  if os.path.islink(path):
    return 'a broken link'
  return 'not a regular file'
