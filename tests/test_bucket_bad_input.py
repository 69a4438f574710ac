"""Bad bucket input stops with a clear error naming the path, exit code 2,
no traceback, and nothing published: a bucket that does not exist, refused
credentials, a data root with no class folders, and an s3:// path that
TensorFlow would have to open."""
import os
import subprocess
import sys

import pytest

from tests import gcs_emulator, images

pytestmark = [pytest.mark.slow, pytest.mark.bucket]


def imgcls_run(gcs, tmp_path, data_root, serving_dir, **kwargs):
  return gcs.run([sys.executable, '-m', 'imgcls.cli', 'run', '--data-root',
                  data_root, '--serving-dir', serving_dir, '--pipeline-root',
                  str(tmp_path / 'pipeline'), '--epochs', '1'],
                 timeout=600, **kwargs)


def assert_refused(result, *words):
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  for word in words:
    assert word in result.stderr, result.stderr[-3000:]


@pytest.fixture
def buckets(gcs, tmp_path):
  images.write_class_folders(str(tmp_path / 'data' / 'train'),
                             {'a': 4, 'b': 4})
  gcs.create_bucket('photos')
  gcs.create_bucket('models')
  gcs.upload_tree(str(tmp_path / 'data'), 'gs://photos/set')
  return gcs


def test_a_missing_bucket_is_named(buckets, tmp_path):
  result = imgcls_run(buckets, tmp_path, 'gs://nosuch/set',
                      'gs://models/serving')
  assert_refused(result, '--data-root gs://nosuch/set: no such bucket '
                 'gs://nosuch')
  result = imgcls_run(buckets, tmp_path, 'gs://photos/set',
                      'gs://gone/serving')
  assert_refused(result, '--serving-dir gs://gone/serving: no such bucket')
  assert buckets.names('gs://models') == []


def test_refused_credentials_are_named(buckets, tmp_path):
  result = imgcls_run(buckets, tmp_path, 'gs://photos/set',
                      'gs://models/serving',
                      token=gcs_emulator.REFUSED_TOKEN)
  assert_refused(result, '--data-root gs://photos/set: gs://photos cannot be '
                 'reached', '401', 'credentials')
  assert buckets.names('gs://models') == []


def test_a_data_root_without_class_folders(buckets, tmp_path):
  buckets.upload('gs://photos/flat/train/readme.txt', b'no folders here')
  result = imgcls_run(buckets, tmp_path, 'gs://photos/flat',
                      'gs://models/serving')
  assert_refused(result, 'gs://photos/flat/train: no class folders')
  assert buckets.names('gs://models') == []


@pytest.mark.parametrize('command', [
    ['run', '--data-root', 'DATA', '--serving-dir', 's3://models/serving'],
    ['predict', '--model-base-path', 's3://models/serving/LenetModel', 'DATA'],
    ['versions', '--model-base-path', 'minio://models/serving/LenetModel'],
])
def test_an_s3_path_that_tf_would_open_is_refused_at_once(command, tmp_path):
  data = images.write_class_folders(str(tmp_path / 'data' / 'train'),
                                    {'a': 2, 'b': 2})
  argv = [os.path.dirname(data) if a == 'DATA' else a for a in command]
  result = subprocess.run(
      [sys.executable, '-m', 'imgcls.cli', *argv, '--pipeline-root',
       str(tmp_path / 'pipeline')] if command[0] == 'run' else
      [sys.executable, '-m', 'imgcls.cli', *argv],
      capture_output=True, text=True, timeout=300)
  assert_refused(result, 'TensorFlow cannot open', '://', 'gs://')
  assert not os.path.exists(tmp_path / 'pipeline' / 'metadata.sqlite')
