"""TF's own gs:// code against the emulator: the harness holds what the
project needs of a bucket (tests/gcs_emulator.py)."""
import textwrap

import pytest

from tests import gcs_emulator

pytestmark = [pytest.mark.slow, pytest.mark.bucket]


def run_python(gcs, code: str) -> str:
  result = gcs.run(['python', '-c', textwrap.dedent(code)])
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_gfile_writes_lists_reads_and_renames_a_directory(gcs):
  gcs.create_bucket('photos')
  gcs.upload('gs://photos/in/a.txt', b'from outside')
  out = run_python(gcs, """
      import tensorflow as tf
      g = tf.io.gfile
      print(g.GFile('gs://photos/in/a.txt', 'rb').read().decode())
      g.makedirs('gs://photos/new/deep')
      with g.GFile('gs://photos/new/deep/b.txt', 'w') as f:
        f.write('from TF')
      g.rename('gs://photos/new', 'gs://photos/moved')
      print(sorted(g.listdir('gs://photos')), g.glob('gs://photos/moved/*'))
  """)
  assert out.splitlines() == [
      'from outside', "['in/', 'moved/'] ['gs://photos/moved/deep']"]
  assert 'moved/deep/b.txt' in gcs.names('gs://photos')
  assert not [n for n in gcs.names('gs://photos') if n.startswith('new/')]
  assert gcs.read('gs://photos/moved/deep/b.txt') == b'from TF'


def test_a_saved_model_saves_to_and_loads_from_a_bucket(gcs):
  gcs.create_bucket('models')
  out = run_python(gcs, """
      import tensorflow as tf
      from tests import served_models
      served_models.save_model('gs://models/lenet')
      loaded = tf.saved_model.load('gs://models/lenet')
      serve = loaded.signatures['serving_default']
      print(sorted(serve.structured_outputs))
  """)
  assert out.strip() == "['class_id', 'class_name', 'logits', 'probabilities']"
  assert 'lenet/saved_model.pb' in gcs.names('gs://models/lenet')


def test_a_refused_token_is_refused(gcs):
  gcs.create_bucket('private')
  result = gcs.run(['python', '-c', textwrap.dedent("""
      import tensorflow as tf
      tf.io.gfile.GFile('gs://private/a', 'rb').read()
  """)], token=gcs_emulator.REFUSED_TOKEN)
  assert result.returncode != 0
  assert '401' in result.stderr, result.stderr[-2000:]
