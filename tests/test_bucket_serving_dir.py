"""A serving directory in a bucket (imgcls/serving_dir/bucket.py): TF Serving,
told by the model config file which version to load, never sees a version
that is not complete; history, keep-N and rollback work as on disk. Through
TF's own GCS code against the emulator (tests/gcs_emulator.py)."""
import json
import os
import subprocess
import textwrap
import threading

from google.protobuf import text_format
import pytest
from tensorflow_serving.config import model_server_config_pb2

from tests import served_models

pytestmark = [pytest.mark.slow, pytest.mark.bucket]

BASE = 'gs://models/serving/Lenet'
CONFIG = 'gs://models/serving/models.config'
# Publishes a copy of the SavedModel argv[1] into BASE; with argv[2], says
# so in that file once the copy is written and waits for argv[2] + '.go'.
_PUBLISH = textwrap.dedent("""
    import os, sys, time
    from imgcls.contract import storage
    from imgcls.serving_dir import versions
    saved, base = sys.argv[1], sys.argv[2]
    signal = sys.argv[3] if len(sys.argv) > 3 else None

    def write(version_dir):
      storage.copytree(saved, version_dir)
      if signal:
        open(signal, 'w').close()
        while not os.path.exists(signal + '.go'):
          time.sleep(0.05)

    print(versions.publish(base, write))
    print(versions.prune(base, 2))
""")


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  return served_models.save_model(
      str(tmp_path_factory.mktemp('saved') / 'model'))


def served_by_config(gcs):
  """The version models.config names for the model, or None."""
  try:
    text = gcs.read(CONFIG).decode()
  except OSError:
    return None
  config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
  (model,) = config.model_config_list.config
  assert model.base_path == BASE
  (version,) = model.model_version_policy.specific.versions
  return version


def complete(gcs, saved, version):
  names = {n[len('serving/Lenet/'):].split('/', 1)[1]
           for n in gcs.names(f'{BASE}/{version}/')}
  wanted = {os.path.relpath(os.path.join(parent, f), saved)
            for parent, _, files in os.walk(saved) for f in files}
  return wanted <= names


def publish(gcs, saved, *signal):
  return gcs.popen(['python', '-c', _PUBLISH, saved, BASE, *signal],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_config_names_only_complete_versions(gcs, saved, tmp_path):
  gcs.create_bucket('models')
  seen, problems, stop = set(), [], threading.Event()

  def poll():  # what TF Serving would load, on every look
    while not stop.is_set():
      version = served_by_config(gcs)
      if version is not None:
        seen.add(version)
        if not complete(gcs, saved, version):
          problems.append(version)

  poller = threading.Thread(target=poll)
  poller.start()
  try:
    for expected in (1, 2):
      signal = str(tmp_path / f'copied-{expected}')
      writer = publish(gcs, saved, signal)
      served_models.wait_for(lambda: os.path.exists(signal), 120)
      # All of the version is in the bucket under its number, and still
      # neither TF Serving's config nor the project's listing names it.
      assert complete(gcs, saved, expected)
      assert served_by_config(gcs) == (expected - 1 or None)
      open(signal + '.go', 'w').close()
      out, err = writer.communicate(timeout=120)
      assert writer.returncode == 0, err[-3000:]
      assert out.split()[0] == str(expected)
      assert served_by_config(gcs) == expected
  finally:
    stop.set()
    poller.join()
  assert not problems
  assert seen == {1, 2}


def test_keep_n_history_and_rollback_in_a_bucket(gcs, saved):
  gcs.create_bucket('models')
  for expected in (1, 2, 3):
    writer = publish(gcs, saved)
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err[-3000:]
    assert out.split()[0] == str(expected)
  assert not [n for n in gcs.names('gs://models/serving/Lenet/1/')
              if not n.endswith('/')]
  result = gcs.run(['python', '-m', 'imgcls.cli', 'versions',
                    '--model-base-path', BASE, '--json'])
  assert result.returncode == 0, result.stderr[-3000:]
  states = {r['version']: r['state'] for r in json.loads(result.stdout)}
  assert states == {3: 'serving', 2: 'published', 1: 'pruned'}
  result = gcs.run(['python', '-m', 'imgcls.cli', 'rollback',
                    '--model-base-path', BASE])
  assert result.returncode == 0, result.stderr[-3000:]
  assert served_by_config(gcs) == 4
  assert complete(gcs, saved, 4)
  result = gcs.run(['python', '-m', 'imgcls.cli', 'rollback',
                    '--model-base-path', BASE, '--to', '1'])
  assert result.returncode == 2
  assert 'was pruned' in result.stderr
  assert served_by_config(gcs) == 4

# The versions the server at 127.0.0.1:argv[1] reports AVAILABLE for Lenet.
_AVAILABLE = textwrap.dedent("""
    import json, sys, urllib.request
    url = f'http://127.0.0.1:{sys.argv[1]}/v1/models/Lenet'
    try:
      with urllib.request.urlopen(url, timeout=5) as reply:
        status = json.load(reply)['model_version_status']
    except OSError:
      status = []
    print(sorted(int(s['version']) for s in status
                 if s['state'] == 'AVAILABLE'))
""")


def test_serve_follows_the_model_config_in_the_bucket(gcs, saved):
  gcs.create_bucket('models')
  writer = publish(gcs, saved)
  assert writer.communicate(timeout=120) and writer.returncode == 0
  port = served_models.free_port()
  server = gcs.popen(
      ['python', '-m', 'imgcls.cli', 'serve', '--model_config_file', CONFIG,
       '--model_config_file_poll_wait_seconds', '1', '--rest_api_port',
       str(port), '--port', '0'],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

  def available():
    result = gcs.run(['python', '-c', _AVAILABLE, str(port)])
    return json.loads(result.stdout.strip() or '[]')

  try:
    assert served_models.wait_for(lambda: available() == [1], 180, 1)
    writer = publish(gcs, saved)
    assert writer.communicate(timeout=120) and writer.returncode == 0
    assert served_models.wait_for(lambda: available() == [2], 180, 1)
  finally:
    server.terminate()
    server.communicate(timeout=60)
