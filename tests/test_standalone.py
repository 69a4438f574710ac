"""`imgcls train`, `evaluate`, `predict` and the class-folder checks."""
import os
import shutil

import pytest

from imgcls import cli
from imgcls.contract.errors import UserError
from imgcls.imagedata import class_folders
from tests import images

CLASSES = {'a': 6, 'b': 6, 'c': 6}


@pytest.fixture
def data(tmp_path):
  images.write_class_folders(str(tmp_path / 'train'), CLASSES)
  images.write_class_folders(str(tmp_path / 'test'), CLASSES, fmt='JPEG',
                             seed=1)
  return tmp_path


def test_train_saves_numbered_versions_then_evaluate_and_predict(
    data, capsys):
  args = ['train', '--train-dir', str(data / 'train'), '--test-dir',
          str(data / 'test'), '--model-dir', str(data / 'models'),
          '--epochs', '1', '--batch-size', '8']
  assert cli.main(args) == 0
  assert cli.main(args) == 0
  base = data / 'models' / 'LenetModel'
  assert sorted(os.listdir(base)) == ['1', '2', 'checkpoints']
  assert (base / 'checkpoints' / 'best' / 'saved_model.pb').exists()
  capsys.readouterr()

  assert cli.main(['evaluate', '--test-dir', str(data / 'test'),
                   '--model-path', str(base / '2')]) == 0
  out = capsys.readouterr().out
  assert '18 test images' in out
  assert 'serving_bytes: accuracy' in out and 'serving_default: accuracy' in out
  # Exact for any model, trained or not: serving_default is sent the pixels
  # serving_bytes decodes from these JPEGs (TensorFlow's decoder, not
  # Pillow's), so both compute the same logits bit for bit.
  assert 'agree on 100.00%' in out

  assert cli.main(['predict', '--model-base-path', str(base),
                   str(data / 'test' / 'b')]) == 0
  out = capsys.readouterr().out
  assert f'model: {base / "2"}' in out
  assert out.count('.jpg: ') == 6


def test_corrupt_and_non_image_files_are_skipped_and_listed(data, caplog):
  (data / 'train' / 'a' / 'broken.png').write_bytes(
      images.encode(images.digit_like(0))[:40])
  (data / 'train' / 'b' / 'notes.txt').write_text('not an image')
  listing = class_folders.read_split(str(data / 'train'))
  assert len(listing.files) == 18
  assert sorted(os.path.basename(p) for p, _ in listing.skipped) == [
      'broken.png', 'notes.txt']
  assert 'broken.png' in caplog.text and 'notes.txt' in caplog.text


def test_unsupported_formats_are_skipped(tmp_path):
  from PIL import Image
  images.write_class_folders(str(tmp_path), {'a': 1, 'b': 1})
  Image.new('L', (8, 8)).save(tmp_path / 'a' / 'x.tiff')
  skipped = class_folders.read_split(str(tmp_path)).skipped
  assert len(skipped) == 1 and 'unsupported format TIFF' in skipped[0][1]


@pytest.mark.parametrize('breakage,message', [
    ('missing', 'no such directory'),
    ('no_classes', 'no class folders'),
    ('empty_class', 'no readable images: .*c'),
    ('nothing_readable', 'no readable images'),
])
def test_bad_folders_stop_with_the_path(data, breakage, message):
  train = data / 'train'
  if breakage == 'missing':
    train = data / 'nowhere'
  elif breakage == 'no_classes':
    train = data / 'flat'
    train.mkdir()
    (train / 'x.png').write_bytes(images.encode(images.digit_like(0)))
  elif breakage == 'empty_class':
    for f in (train / 'c').iterdir():
      f.unlink()
  else:
    for f in train.glob('*/*'):
      f.write_text('garbage')
  with pytest.raises(UserError, match=message) as e:
    class_folders.read_split(str(train))
  assert str(train) in str(e.value)


def test_train_and_test_with_different_classes_stop(data, capsys):
  os.rename(data / 'test' / 'c', data / 'test' / 'd')
  assert cli.main(['train', '--train-dir', str(data / 'train'), '--test-dir',
                   str(data / 'test'), '--model-dir', str(data / 'm')]) == 2
  err = capsys.readouterr().err
  assert str(data / 'test') in err and "['a', 'b', 'd']" in err
  assert not (data / 'm').exists()


def test_evaluate_rejects_a_non_model_directory(data, capsys):
  assert cli.main(['evaluate', '--test-dir', str(data / 'test'),
                   '--model-path', str(data)]) == 2
  assert 'not a SavedModel' in capsys.readouterr().err


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  """`imgcls sample-data` output, as the issue 36 repros start from."""
  out = tmp_path_factory.mktemp('digits') / 'data'
  assert cli.main(['sample-data', '--out', str(out)]) == 0
  return out


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  from tests import served_models
  return served_models.save_model(str(tmp_path_factory.mktemp('saved') / 'm'))


def _versions_with(base, saved, newest):
  """Version 1 a SavedModel, version 7 as `newest` makes it."""
  shutil.copytree(saved, base / '1')
  newest(base / '7')
  return base


@pytest.mark.parametrize('newest', [
    os.makedirs,  # an empty newest version
    lambda path: os.makedirs(path / 'variables'),  # variables/ only
])
def test_predict_on_a_version_with_no_saved_model_names_it(
    tmp_path, digits, saved, capsys, newest):
  base = _versions_with(tmp_path / 'M', saved, newest)
  for source in (['--model-base-path', str(base)],
                 ['--model-path', str(base / '7')]):
    assert cli.main(['predict', *source, str(digits / 'test' / '3')]) == 2
    err = capsys.readouterr().err
    assert err == (f'imgcls predict: error: {base / "7"}: not a SavedModel '
                   'directory: no saved_model.pb in it\n')


def test_predict_and_evaluate_on_saved_model_pb_itself_say_the_same(
    digits, saved, capsys):
  model_file = os.path.join(saved, 'saved_model.pb')
  said = []
  for command in (['predict', str(digits / 'test' / '3')],
                  ['evaluate', '--test-dir', str(digits / 'test')]):
    assert cli.main([*command, '--model-path', model_file]) == 2
    said.append(capsys.readouterr().err.split(': error: ')[1])
  assert said == [f'{model_file}: not a SavedModel directory: a file (name '
                  'the directory that holds saved_model.pb)\n'] * 2


def test_predict_skips_a_subfolder_and_a_broken_link_saying_so(
    tmp_path, digits, saved, capsys):
  folder = tmp_path / 'images'
  shutil.copytree(digits / 'test' / '3', folder)
  (folder / 'more').mkdir()
  (folder / 'gone.png').symlink_to(tmp_path / 'nowhere.png')
  assert cli.main(['predict', '--model-path', saved, str(folder)]) == 0
  captured = capsys.readouterr()
  assert captured.err.splitlines() == [
      f'{folder / "gone.png"}: skipped, a broken link',
      f'{folder / "more"}: skipped, a folder (folders are not searched)']
  assert captured.out.count('.png: ') == len(os.listdir(digits / 'test' / '3'))
