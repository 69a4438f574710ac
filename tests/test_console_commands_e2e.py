"""Every command is as quiet as `imgcls run`: each runs as a user runs it, in
its own process, doing real work on tiny data (a server against the
development server or the fake KFP API), and nothing from the libraries
reaches its stdout or stderr: not TensorFlow's C++ start-up, written to file
descriptor 2 before Python logging exists (absl's "All log messages before
absl::InitializeLog()", oneDNN, cudart_stub, cuInit), not absl or setuptools.

The commands run in order on one directory: sample data, a retrain that
pushes version 1, its report, a standalone train, evaluate and predict, a
rollback, the versions, a server, a compile and a submit.
"""
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from tests import images, kfp_fake_server, served_models
from tests.test_console_e2e import NOISE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope='module')
def work(tmp_path_factory):
  root = tmp_path_factory.mktemp('commands')
  images.write_class_folders(str(root / 'data' / 'train'), {'a': 12, 'b': 12})
  images.write_class_folders(str(root / 'data' / 'test'), {'a': 4, 'b': 4},
                             seed=1)
  return root


def _imgcls(work, *args):
  return subprocess.run([sys.executable, '-m', 'imgcls.cli', *map(str, args)],
                        capture_output=True, text=True, timeout=600,
                        check=False, env=_env(work))


def _env(work):
  """Each command's log in the test's directory (console.log_path)."""
  tmp = work / 'tmp'
  tmp.mkdir(exist_ok=True)
  return {**os.environ, 'TMPDIR': str(tmp)}


def _assert_quiet(done):
  assert done.returncode == 0, done.stdout + done.stderr
  lines = (done.stdout + done.stderr).splitlines()
  assert [line for line in lines if NOISE.search(line)] == [], lines


def test_sample_data(work):
  done = _imgcls(work, 'sample-data', '--out', work / 'digits')
  _assert_quiet(done)
  assert done.stdout.startswith('wrote ')


def test_retrain(work):
  done = _imgcls(work, 'retrain', '--once', '--data-root', work / 'data',
                 '--serving-dir', work / 'serving', '--pipeline-root',
                 work / 'pipeline', '--epochs', '1', '--min-accuracy', '0')
  _assert_quiet(done)
  assert ': pushed version 1' in done.stdout


def test_report(work):
  done = _imgcls(work, 'report', '--pipeline-root', work / 'pipeline')
  _assert_quiet(done)
  assert done.stdout.startswith('report: ')


def test_train(work):
  done = _imgcls(work, 'train', '--train-dir', work / 'data' / 'train',
                 '--test-dir', work / 'data' / 'test', '--model-dir',
                 work / 'model', '--epochs', '1')
  _assert_quiet(done)
  assert done.stdout.startswith('saved model: ')
  work.joinpath('saved_model_path').write_text(
      done.stdout.split('saved model: ')[1].strip())


def test_evaluate(work):
  done = _imgcls(work, 'evaluate', '--test-dir', work / 'data' / 'test',
                 '--model-path', work.joinpath('saved_model_path').read_text())
  _assert_quiet(done)
  assert '8 test images' in done.stdout


def test_predict(work):
  done = _imgcls(work, 'predict', '--model-base-path',
                 work / 'serving' / 'LenetModel', work / 'data' / 'test' / 'a')
  _assert_quiet(done)
  assert done.stdout.startswith('model: ')


def test_rollback(work):
  base = work / 'serving' / 'LenetModel'
  shutil.copytree(base / '1', base / '2')  # a second push, to roll back from
  done = _imgcls(work, 'rollback', '--model-base-path', base)
  _assert_quiet(done)
  assert 'version 3 republishes version 1' in done.stdout


def test_versions(work):
  done = _imgcls(work, 'versions', '--model-base-path',
                 work / 'serving' / 'LenetModel')
  _assert_quiet(done)
  assert '3' in done.stdout


def test_serve(work):
  rest, grpc = served_models.free_port(), served_models.free_port()
  server = subprocess.Popen(
      [sys.executable, '-m', 'imgcls.cli', 'serve', '--model_base_path',
       str(work / 'serving' / 'LenetModel'), '--model_name', 'LenetModel',
       '--rest_api_port', str(rest), '--port', str(grpc)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(work))
  try:
    served_models.wait_for(lambda: _available(rest), timeout_s=120)
  finally:
    server.terminate()
    out, err = server.communicate(timeout=60)
  done = subprocess.CompletedProcess(server.args, server.returncode, out, err)
  _assert_quiet(done)
  assert out.startswith('Serving LenetModel')
  assert 'Version 3 of model LenetModel is AVAILABLE' in err  # its own log


def _available(port: int) -> bool:
  try:
    with urllib.request.urlopen(
        f'http://127.0.0.1:{port}/v1/models/LenetModel', timeout=2) as r:
      states = [v['state'] for v in json.load(r)['model_version_status']]
  except OSError:
    return False
  return 'AVAILABLE' in states


def test_compile(work):
  package = work / 'pipeline.yaml'
  done = _imgcls(work, 'compile', '--output', package)
  _assert_quiet(done)
  assert os.path.isfile(package)


def test_submit(work):
  server = kfp_fake_server.FakeKfp()
  try:
    done = _imgcls(work, 'submit', '--host', server.host, '--package',
                   work / 'pipeline.yaml')
  finally:
    server.stop()
  _assert_quiet(done)
  assert len(server.runs) == 1


def test_what_the_libraries_print_is_in_the_commands_log(work):
  # The commands' TMPDIR: each writes $TMPDIR/imgcls-<uid>/<command>.log.
  with open(work / 'tmp' / f'imgcls-{os.geteuid()}' / 'train.log',
            encoding='utf-8') as f:
    log = f.read()
  assert 'epoch' in log.lower()  # Keras' and the trainer's lines
