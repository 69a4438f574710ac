"""`imgcls retrain` on a span layout, run for real with LocalDagRunner.

The tests follow one data root through its life, in order: span-1, span-2,
a span that fails the gate, a watcher killed mid-run, a span with a new class.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from serving_dir import versions as model_versions
from imgcls import cli
from pipeline.config import PipelineConfig
from retrain import state as state_lib
from retrain import watcher
from tests import images
from trainer.config import TrainingConfig

pytestmark = pytest.mark.e2e

CLASSES = {'a': 30, 'b': 30}


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  return tmp_path_factory.mktemp('retrain')


def _add_span(root, span, classes=None, test=True):
  classes = classes or CLASSES
  images.write_class_folders(str(root / 'data' / f'span-{span}' / 'train'),
                             classes, seed=span)
  if test:
    images.write_class_folders(str(root / 'data' / f'span-{span}' / 'test'),
                               {k: 8 for k in classes}, seed=100 + span)


def _options(root, min_accuracy=0.5, min_new_images=1):
  return watcher.RetrainOptions(
      pipeline=PipelineConfig(
          data_root=str(root / 'data'), serving_dir=str(root / 'serving'),
          pipeline_root=str(root / 'pipeline'),
          training=TrainingConfig(epochs=1, batch_size=16),
          example_gen=_window(2), min_accuracy=min_accuracy),
      min_new_images=min_new_images)


def _window(n):
  from components.image_example_gen.options import ExampleGenOptions  # pylint: disable=g-import-not-at-top
  return ExampleGenOptions(span_window=n)


def _versions(root):
  return model_versions.versions(str(root / 'serving' / 'LenetModel'))


def _cli(root, *extra):
  return ['retrain', '--once', '--data-root', str(root / 'data'),
          '--serving-dir', str(root / 'serving'), '--pipeline-root',
          str(root / 'pipeline'), '--epochs', '1', '--batch-size', '16',
          '--window', '2', '--min-accuracy', '0.5', *extra]


def test_span_1_is_trained_and_pushed_as_v1(root, capsys):
  _add_span(root, 1)
  assert cli.main(_cli(root)) == 0
  assert 'span-1: pushed version 1' in capsys.readouterr().out
  assert _versions(root) == [1]


def test_no_new_data_runs_nothing(root, capsys):
  assert cli.main(_cli(root)) == 0
  assert 'no retraining' in capsys.readouterr().out
  assert _versions(root) == [1]


def test_fewer_new_images_than_the_minimum_run_nothing(root, capsys):
  _add_span(root, 2, classes={'a': 2, 'b': 2}, test=False)
  assert cli.main(_cli(root, '--min-new-images', '100')) == 0
  assert 'no retraining' in capsys.readouterr().out
  assert _versions(root) == [1]


def test_span_2_trains_on_the_window_and_pushes_v2(root):
  attempt = watcher.tick(_options(root))
  assert (attempt.data_key, attempt.outcome, attempt.version) == (
      'span-2', state_lib.PUSHED, '2')
  assert _versions(root) == [1, 2]
  from pipeline import results  # pylint: disable=g-import-not-at-top
  info = results.load_run(str(root / 'pipeline')).dataset_info
  assert info['train_spans'] == [1, 2]
  assert info['test_span'] == 1  # span-2 has no test: the newest that has one
  assert info['examples']['train'] == 60 + 4


def test_a_span_that_fails_the_gate_is_not_pushed(root):
  _add_span(root, 3)
  attempt = watcher.tick(_options(root, min_accuracy=1.01))
  assert attempt.outcome == state_lib.NOT_BLESSED
  assert 'sparse_categorical_accuracy' in attempt.detail
  assert _versions(root) == [1, 2]
  assert watcher.tick(_options(root)) is None  # handled: not retried


def test_a_watcher_killed_mid_run_does_not_trigger_twice(root):
  _add_span(root, 4)
  command = [sys.executable, '-m', 'imgcls.cli', *_cli(root)]
  state_file = root / 'pipeline' / state_lib.STATE_FILE
  child = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while time.time() < deadline:
    state = json.loads(state_file.read_text())
    if (state['history'][-1]['data_key'] == 'span-4' and
        any((root / 'pipeline').glob('**/Trainer/model_run/*'))):
      break
    time.sleep(0.2)
  child.send_signal(signal.SIGKILL)
  child.wait()
  killed = json.loads(state_file.read_text())['history'][-1]
  assert (killed['data_key'], killed['outcome']) == ('span-4', 'running')

  restarted = subprocess.run(command, capture_output=True, text=True,
                             check=False)
  assert restarted.returncode == 0, restarted.stderr[-2000:]
  assert _versions(root) == [1, 2, 3]
  again = subprocess.run(command, capture_output=True, text=True, check=False)
  assert 'no retraining' in again.stdout
  assert _versions(root) == [1, 2, 3]
  history = json.loads(state_file.read_text())['history']
  assert [h['data_key'] for h in history].count('span-4') == 1


def test_a_span_with_a_new_class_is_refused_and_named(root, capsys):
  _add_span(root, 5, classes={'a': 5, 'b': 5, 'c': 5})
  assert cli.main(_cli(root)) == 1
  out = capsys.readouterr().out
  assert 'refused' in out and "new classes ['c']" in out
  assert _versions(root) == [1, 2, 3]
  assert cli.main(_cli(root)) == 0  # handled: not refused again every tick


def test_a_second_watcher_is_locked_out(root):
  with state_lib.exclusive(str(root / 'pipeline')):
    with pytest.raises(Exception, match='another retrain watcher'):
      with state_lib.exclusive(str(root / 'pipeline')):
        pass
