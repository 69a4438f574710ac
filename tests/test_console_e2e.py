"""What a user sees from a default `imgcls run`: a progress display, not the
libraries' logs. Run as a user runs it, in its own process, so that what C++
writes to file descriptor 2 (CUDA probing) is seen too."""
import os
import re
import subprocess
import sys

import pytest

from tests import images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# What TFX, absl, TensorFlow's C++ logging (oneDNN, cudart_stub, cuInit),
# setuptools and CUDA print.
NOISE = re.compile(
    r'absl|^[IWEF]\d{4} |^(INFO|WARNING|ERROR)[: ]|cuda|cuInit|oneDNN|'
    r'setuptools|wheel|Traceback|property_predicate', re.IGNORECASE)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp('console')
  images.write_class_folders(str(root / 'data' / 'train'), {'a': 20, 'b': 20})
  images.write_class_folders(str(root / 'data' / 'test'), {'a': 6, 'b': 6},
                             seed=1)
  done = subprocess.run(
      [sys.executable, '-m', 'imgcls.cli', 'run', '--data-root',
       str(root / 'data'), '--serving-dir', str(root / 'serving'),
       '--pipeline-root', str(root / 'pipeline'), '--epochs', '2',
       '--min-accuracy', '0'],
      capture_output=True, text=True, timeout=900, check=False)
  return root, done


def test_prints_no_library_logs(run):
  _, done = run
  assert done.returncode == 0, done.stderr
  lines = (done.stdout + done.stderr).splitlines()
  assert [line for line in lines if NOISE.search(line)] == []


def test_a_line_as_each_component_starts_and_ends_with_its_result(run):
  _, done = run
  err = done.stderr
  for component in ('ImageExampleGen', 'Trainer', 'GatedEvaluator', 'Pusher'):
    assert f'{component} ...' in err
    assert re.search(rf'^{component} done in \d+\.\ds', err, re.M), err
  assert re.search(r'ImageExampleGen done .*examples: train 40, test 12', err)
  assert re.search(r'^  epoch 2/2: accuracy \d\.\d{4}, loss ', err, re.M)
  assert re.search(r'Pusher done .*pushed version 1', err)


def test_the_summary_is_the_output_and_the_rest_is_in_the_log(run):
  root, done = run
  assert done.stdout.startswith('run ')
  assert 'pushed version 1' in done.stdout
  with open(os.path.join(root, 'pipeline', 'imgcls.log')) as f:
    log = f.read()
  assert 'Component Trainer is finished.' in log
  assert 'epoch 2/2' in log
