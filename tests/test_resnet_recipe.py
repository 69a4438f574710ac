"""ResnetModel as the seed meant it: the recipe follows the weights, ImageNet
weights by default and fetched within a deadline, shapes fitted and options
checked when the command starts.

Not verified here: a real download of the ImageNet file (this machine has no
internet), and a Trainer pod reading a weights file from the data PVC of a
real cluster.
"""
import argparse
import http.server
import itertools
import logging
import os
import re
import socket
import subprocess
import sys
import threading

import pytest
import tensorflow as tf

from imgcls.contract import progress
from imgcls.contract.errors import UserError
from imgcls.imagedata import sample_data
from imgcls.trainer import dataset, models, pretrained, startup, training
from imgcls.trainer.config import TrainingConfig

CLASSES = ['zero', 'one', 'two']
WAYS_OUT = ('weights=/path/to/resnet50v2_notop.h5', 'weights=none')


@pytest.fixture
def home(tmp_path, monkeypatch):
  """An empty Keras cache: HOME is where get_file looks (expanduser)."""
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  os.makedirs(tmp_path / 'home' / '.keras')
  return tmp_path / 'home'


# What the weights are and where Keras keeps them.


def test_weights_file_is_the_one_tf_keras_downloads():
  from tf_keras.src.applications import resnet
  weights = pretrained.RESNET50V2_NOTOP
  assert weights.url == resnet.BASE_WEIGHTS_PATH + weights.file_name
  assert weights.md5 == resnet.WEIGHTS_HASHES['resnet50v2'][1]
  assert weights.file_name == ('resnet50v2_weights_tf_dim_ordering_tf_kernels'
                               '_notop.h5')


@pytest.mark.parametrize('keras_dir', [True, False])
def test_cache_path_is_where_get_file_looks(tmp_path, monkeypatch, keras_dir):
  monkeypatch.setenv('HOME', str(tmp_path))
  if keras_dir:
    os.makedirs(tmp_path / '.keras')
  weights = pretrained.WeightsFile('weights-of-a-test.h5', 'http://x/', '', 1)
  path = weights.keras_cache_path()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(b'weights')
  try:
    # Found there, get_file returns it without downloading (the origin is
    # not even a server).
    assert tf.keras.utils.get_file(
        weights.file_name, 'http://127.0.0.1:1/none',
        cache_subdir='models') == path
  finally:
    os.remove(path)


# Fetching within a deadline.


class _Weights(http.server.BaseHTTPRequestHandler):
  body = b'not really weights' * 1000

  def do_GET(self):
    self.send_response(200)
    self.send_header('Content-Length', str(len(self.body)))
    self.end_headers()
    self.wfile.write(self.body)

  def log_message(self, *args):
    del args


@pytest.fixture
def server():
  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Weights)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  yield f'http://127.0.0.1:{httpd.server_address[1]}/weights.h5'
  httpd.shutdown()


def _md5(data: bytes) -> str:
  import hashlib
  return hashlib.md5(data).hexdigest()


def test_fetched_once_into_keras_cache(home, server):
  weights = pretrained.WeightsFile('w.h5', server, _md5(_Weights.body), 1)
  path = pretrained.ensure(weights, 'ways out')
  assert path == str(home / '.keras' / 'models' / 'w.h5')
  with open(path, 'rb') as f:
    assert f.read() == _Weights.body
  # Cached: no server needed the second time.
  cached = pretrained.WeightsFile('w.h5', 'http://127.0.0.1:1/', weights.md5,
                                  1)
  assert pretrained.ensure(cached, 'ways out') == path


def test_a_corrupt_download_leaves_nothing(home, server):
  weights = pretrained.WeightsFile('w.h5', server, '0' * 32, 1)
  with pytest.raises(UserError, match='md5.*ways out'):
    pretrained.ensure(weights, 'ways out')
  assert os.listdir(home / '.keras' / 'models') == []


def test_a_refused_connection_names_the_ways_out(home):
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]  # closed once the block ends
  weights = pretrained.WeightsFile('w.h5', f'http://127.0.0.1:{port}/', '', 1)
  with pytest.raises(UserError, match='cannot fetch .*ways out'):
    pretrained.ensure(weights, 'ways out')


def test_a_server_that_never_answers_is_not_waited_for(home):
  with socket.socket() as silent:
    silent.bind(('127.0.0.1', 0))
    silent.listen()  # the kernel completes connections; nobody answers
    url = f'http://127.0.0.1:{silent.getsockname()[1]}/'
    weights = pretrained.WeightsFile('w.h5', url, '', 1)
    with pytest.raises(UserError, match='no answer within 0.5 s'):
      pretrained.ensure(weights, 'ways out', deadline_s=0.5)


# Shapes and options, checked when the command starts.


def _args(input_shape=None):
  return argparse.Namespace(input_shape=input_shape)


def test_smaller_data_is_resized_up_to_the_minimum_and_the_console_says_so(
    caplog):
  caplog.set_level(logging.INFO, logger=progress.LOGGER_NAME)
  config = TrainingConfig(model_type='ResnetModel',
                          model_options={'weights': None})
  assert startup.check(config, _args(), local=True).input_shape == (32, 32, 1)
  assert re.search(r'ResnetModel takes images of at least 32x32: resizing '
                   r'them up from 28x28 to 32x32', caplog.text)
  lenet = TrainingConfig(model_type='LenetModel')
  assert startup.check(lenet, _args(), local=True).input_shape == (28, 28, 1)


def test_a_given_shape_below_the_minimum_is_refused():
  config = TrainingConfig(model_type='ResnetModel', input_shape=(28, 28, 3),
                          model_options={'weights': None})
  with pytest.raises(UserError, match='at least 32x32, got 28x28: leave '
                     '--input-shape out'):
    startup.check(config, _args((28, 28, 3)), local=True)


def test_unknown_options_are_refused_with_the_known_ones():
  config = TrainingConfig(model_type='LenetModel',
                          model_options={'filters': '8'})
  with pytest.raises(UserError, match='no model option filters; its options: '
                     'conv1_filters, conv2_filters, dropout'):
    startup.check(config, _args(), local=True)


def test_a_local_weights_file_must_exist_here_and_be_absolute_on_kubeflow(
    tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = TrainingConfig(model_type='ResnetModel',
                          model_options={'weights': 'missing.h5'})
  with pytest.raises(UserError, match=f'weights={tmp_path}/missing.h5: no '
                     'such file; give a weights file of ResNet50V2'):
    startup.check(config, _args(), local=True)
  with pytest.raises(UserError, match="absolute path .* Trainer's volumes"):
    startup.check(config, _args(), local=False)


# Issue 36, cases 9 and 10: each found when the command starts, where the
# Trainer would have died in Keras, after the data steps, not naming it.
_BAD_WEIGHTS = {
    'not HDF5': (lambda p: p.write_text('<html>Not Found</html>'),
                 'not an HDF5 file'),
    'empty': (lambda p: p.write_bytes(b''), 'an empty file'),
    'directory': (lambda p: p.mkdir(), 'a directory, not a weights file'),
}


@pytest.mark.parametrize('kind', sorted(_BAD_WEIGHTS))
def test_a_weights_file_keras_cannot_read_is_named_with_its_problem(
    tmp_path, kind):
  make, problem = _BAD_WEIGHTS[kind]
  path = tmp_path / 'resnet50v2_notop.h5'
  make(path)
  config = TrainingConfig(model_type='ResnetModel',
                          model_options={'weights': str(path)})
  with pytest.raises(UserError, match=f'weights={path}: {problem}'):
    startup.check(config, _args(), local=True)


def test_imagenet_weights_that_cannot_be_fetched_stop_the_command(
    home, monkeypatch):
  monkeypatch.setattr(pretrained, 'RESNET50V2_NOTOP', pretrained.WeightsFile(
      'w.h5', 'http://127.0.0.1:1/w.h5', '', 94))
  config = TrainingConfig(model_type='ResnetModel')
  with pytest.raises(UserError) as raised:
    startup.check(config, _args(), local=True)
  assert all(way in str(raised.value) for way in WAYS_OUT)


def test_imagenet_weights_are_refused_on_kubeflow_with_the_ways_out(home):
  """A Trainer pod would download them at run time, into a fresh ~/.keras
  in every pod, and fail there in a cluster without the access."""
  config = TrainingConfig(model_type='ResnetModel')
  with pytest.raises(UserError) as raised:
    startup.check(config, _args(), local=False)
  assert 'inside every Trainer pod' in str(raised.value)
  assert 'weights=/data/weights/' in str(raised.value)
  assert 'weights=none' in str(raised.value)


# The recipe follows the weights.


def _bn_layers(model):
  return [layer for layer in model.get_layer('resnet50v2').layers
          if isinstance(layer, tf.keras.layers.BatchNormalization)]


@pytest.mark.slow
def test_a_random_backbone_trains_whole_from_the_first_epoch():
  model = models.build_model('ResnetModel', (32, 32, 1), CLASSES,
                             weights=None)
  (stage,) = model.training_stages()
  assert (stage.name, stage.learning_rate_scale) == (models.ALL_STAGE, 1.0)
  stage.enter(model)
  assert all(layer.trainable
             for layer in model.get_layer('resnet50v2').layers)
  assert {layer.momentum for layer in _bn_layers(model)} == {0.9}


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
  """A ResNet50V2 without top, saved by the test: the local-file way out."""
  backbone = tf.keras.applications.ResNet50V2(
      include_top=False, weights=None, input_shape=(32, 32, 3),
      pooling='avg')
  for variable in backbone.trainable_variables[:1]:
    variable.assign(tf.fill(variable.shape, 0.01))  # recognisable
  path = str(tmp_path_factory.mktemp('weights') / 'resnet50v2_notop.h5')
  backbone.save_weights(path)
  return path


def _digits(count: int):
  """(pixels 32x32x1, labels) of the bundled digits, resized as the
  Trainer resizes them."""
  pairs = list(itertools.islice(
      ((label, image) for split, label, image in sample_data.digits_images()
       if split == 'train'), count))
  pixels = tf.image.resize(
      tf.constant([image for _, image in pairs], tf.float32)[..., None],
      (32, 32))
  labels = tf.constant([label for label, _ in pairs], tf.int64)
  return tf.data.Dataset.from_tensor_slices((pixels, labels)).batch(16)


def _stages_trained(model, tmp_path, caplog) -> list:
  """The stage names the epoch lines carry ('' when there is one stage)."""
  caplog.set_level(logging.INFO, logger=progress.LOGGER_NAME)
  caplog.clear()
  data = _digits(32)
  inputs = dataset.Inputs(data, data, 32, [4] * 10)
  config = TrainingConfig(model_type='ResnetModel', epochs=1,
                          input_shape=(32, 32, 1))
  training.fit(model, config, inputs, training.Backup(str(tmp_path)))
  return re.findall(r'^  (?:(\w+): )?epoch \d+/\d+', '\n'.join(caplog.messages),
                    re.M)


@pytest.mark.slow
def test_a_weights_file_is_taken_as_the_trainer_will_read_it(
    weights_file, monkeypatch):
  monkeypatch.chdir(os.path.dirname(weights_file))
  config = TrainingConfig(model_type='ResnetModel', model_options={
      'weights': os.path.basename(weights_file)})
  assert startup.check(config, _args(), local=True).model_options == {
      'weights': weights_file}


@pytest.mark.slow
def test_weights_of_another_network_are_refused_naming_the_layers(tmp_path):
  inputs = tf.keras.Input(shape=(4,))
  other = tf.keras.Model(inputs, tf.keras.layers.Dense(2, name='dense')(inputs))
  path = str(tmp_path / 'dense.h5')
  other.save_weights(path)
  config = TrainingConfig(model_type='ResnetModel',
                          model_options={'weights': path})
  with pytest.raises(UserError, match=re.escape(
      f"weights={path}: its layers are not the network's: missing "
      'conv1_conv, conv2_block1_preact_bn, conv2_block1_1_conv, '
      'conv2_block1_1_bn, conv2_block1_2_conv and 97 more; not in the network '
      'dense')):
    startup.check(config, _args(), local=True)
  # A Trainer pod, whose file could not be checked when compiling, says the
  # same before Keras reads it.
  with pytest.raises(UserError, match=re.escape(
      f"weights={path}: its layers are not the network's")):
    models.build_model('ResnetModel', (32, 32, 1), CLASSES, weights=path)


@pytest.mark.slow
def test_the_staged_recipe_runs_only_with_pretrained_weights(
    weights_file, tmp_path, caplog):
  digits = [str(d) for d in range(10)]
  from_file = models.build_model('ResnetModel', (32, 32, 1), digits,
                                 weights=weights_file)
  first = from_file.get_layer('resnet50v2').trainable_variables[0]
  assert float(tf.reduce_min(first)) == pytest.approx(0.01)  # the file's
  assert {layer.momentum for layer in _bn_layers(from_file)} == {0.99}
  assert _stages_trained(from_file, tmp_path / 'a', caplog) == [
      'head', 'top_blocks']
  random = models.build_model('ResnetModel', (32, 32, 1), digits,
                              weights=None)
  assert _stages_trained(random, tmp_path / 'b', caplog) == ['']


# As a user runs the commands, in their own processes.


def _offline_env(home) -> dict:
  """No way to fetch: an empty cache, and every HTTPS request sent to a
  proxy port where nothing listens (urllib reads https_proxy)."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  env = {k: v for k, v in os.environ.items()
         if k.lower() not in ('no_proxy', 'https_proxy', 'http_proxy')}
  return {**env, 'HOME': str(home), 'https_proxy': f'http://127.0.0.1:{port}'}


@pytest.mark.slow
@pytest.mark.parametrize('command', (['run'], ['retrain', '--once']))
def test_without_imagenet_weights_stops_before_any_component(home, tmp_path,
                                                             command):
  data = tmp_path / 'data'
  sample_data.write_class_folders(
      itertools.islice(sample_data.digits_images(), 60), str(data))
  done = subprocess.run(
      [sys.executable, '-m', 'imgcls.cli', *command, '--model-type',
       'ResnetModel', '--data-root', str(data), '--serving-dir',
       str(tmp_path / 'serving'), '--pipeline-root', str(tmp_path / 'root')],
      capture_output=True, text=True, timeout=120, check=False,
      env=_offline_env(home))
  assert done.returncode == 2, done.stderr
  assert (f'imgcls {command[0]}: error: cannot fetch '
          'https://storage.googleapis.com') in done.stderr
  for way in WAYS_OUT:
    assert way in done.stderr
  assert not os.path.exists(tmp_path / 'root')
  assert not os.path.exists(tmp_path / 'serving')


@pytest.mark.slow
@pytest.mark.parametrize('command, kind', (
    (['run'], 'not HDF5'),
    (['retrain', '--once'], 'empty'),
    (['train'], 'directory'),
))
def test_a_bad_weights_file_stops_the_command_before_any_component(
    home, tmp_path, command, kind):
  """Retrain included: bad input, not a failed try it would repeat."""
  data = tmp_path / 'data'
  sample_data.write_class_folders(
      itertools.islice(sample_data.digits_images(), 60), str(data))
  make, problem = _BAD_WEIGHTS[kind]
  weights = tmp_path / 'resnet50v2_notop.h5'
  make(weights)
  places = (['--train-dir', str(data / 'train'), '--test-dir',
             str(data / 'test'), '--model-dir', str(tmp_path / 'serving')]
            if command == ['train'] else
            ['--data-root', str(data), '--serving-dir',
             str(tmp_path / 'serving'), '--pipeline-root',
             str(tmp_path / 'root')])
  done = subprocess.run(
      [sys.executable, '-m', 'imgcls.cli', *command, '--model-type',
       'ResnetModel', '--model-option', f'weights={weights}', *places],
      capture_output=True, text=True, timeout=120, check=False,
      env=_offline_env(home))
  assert done.returncode == 2, done.stderr
  assert (f'imgcls {command[0]}: error: --model-option weights={weights}: '
          f'{problem}') in done.stderr
  assert 'Traceback' not in done.stderr
  assert not os.path.exists(tmp_path / 'root')
  assert not os.path.exists(tmp_path / 'serving')


@pytest.mark.e2e
@pytest.mark.slow
def test_train_from_scratch_on_28x28_digits_needs_no_input_shape(tmp_path):
  data = tmp_path / 'data'
  sample_data.write_class_folders(
      itertools.islice(sample_data.digits_images(), 500), str(data))
  done = subprocess.run(
      [sys.executable, '-m', 'imgcls.cli', 'train', '--model-type',
       'ResnetModel', '--model-option', 'weights=none', '--train-dir',
       str(data / 'train'), '--test-dir', str(data / 'test'), '--model-dir',
       str(tmp_path / 'models'), '--epochs', '3', '--batch-size', '32',
       '--augment', 'none'],
      capture_output=True, text=True, timeout=900, check=False)
  assert done.returncode == 0, done.stderr
  assert 'resizing them up from 28x28 to 32x32' in done.stderr
  accuracy = re.search(r'^  epoch 3/3: accuracy (\d\.\d+)', done.stderr, re.M)
  assert accuracy and float(accuracy.group(1)) > 0.8, done.stderr
  assert os.path.isdir(tmp_path / 'models' / 'ResnetModel' / '1')
