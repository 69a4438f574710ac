"""The publish that pushes and rollbacks share: temporaries judged by their
writer's lock, never by modification times (issue 19)."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from imgcls.serving_dir import temporaries, versions

_TWO_HOURS_AGO = time.time() - 7200


def _old_model(path):
  """A model directory whose files are two hours old, as copytree keeps them."""
  os.makedirs(os.path.join(path, 'variables'))
  for name in ('saved_model.pb', 'variables/variables.index'):
    with open(os.path.join(path, name), 'w') as f:
      f.write(name)
    os.utime(os.path.join(path, name), (_TWO_HOURS_AGO, _TWO_HOURS_AGO))
  os.utime(path, (_TWO_HOURS_AGO, _TWO_HOURS_AGO))
  return path


def _stand_in(tmp_dir):
  """The least that publish takes for a SavedModel: a saved_model.pb."""
  os.makedirs(tmp_dir)
  open(os.path.join(tmp_dir, 'saved_model.pb'), 'w').close()


def _temporaries(base):
  return sorted(n for n in os.listdir(base) if temporaries.is_temporary(n))


def test_a_live_writers_old_looking_temporary_survives_another_publish(
    tmp_path):
  source = _old_model(str(tmp_path / 'model'))
  base = str(tmp_path / 'serving')
  copied, release = threading.Event(), threading.Event()
  published = []

  def slow_write(tmp_dir):
    shutil.copytree(source, tmp_dir)  # keeps the two-hour-old times
    os.utime(tmp_dir, (_TWO_HOURS_AGO, _TWO_HOURS_AGO))
    copied.set()
    assert release.wait(30)

  writer = threading.Thread(
      target=lambda: published.append(versions.publish(base, slow_write)))
  writer.start()
  assert copied.wait(30)
  # Another publish runs its clean-up while the first is mid-write.
  assert versions.publish(base, lambda d: shutil.copytree(source, d)) == 1
  release.set()
  writer.join()
  assert published == [2]
  assert sorted(os.listdir(os.path.join(base, '2'))) == [
      'saved_model.pb', 'variables']
  assert _temporaries(base) == []


_KILLED_MID_COPY = '''
import os, sys, time
sys.path.insert(0, {repo!r})
from imgcls.serving_dir import versions
def write(tmp_dir):
  os.makedirs(tmp_dir)
  with open(os.path.join(tmp_dir, 'saved_model.pb'), 'w') as f:
    f.write('half')
  print('copying', flush=True)
  time.sleep(600)
versions.publish({base!r}, write)
'''


def test_a_dead_writers_temporary_goes_at_the_next_publish(tmp_path):
  base = str(tmp_path / 'serving')
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  writer = subprocess.Popen(
      [sys.executable, '-c', _KILLED_MID_COPY.format(repo=repo, base=base)],
      stdout=subprocess.PIPE, text=True)
  try:
    assert writer.stdout.readline() == 'copying\n'
    (left,) = [n for n in _temporaries(base) if not n.endswith('.lock')]
    # Fresh files, a live writer: nothing else may touch them.
    versions.publish(base, _stand_in)
    assert left in _temporaries(base)
  finally:
    writer.send_signal(signal.SIGKILL)
    writer.wait()
  assert versions.publish(base, _stand_in) == 2
  assert _temporaries(base) == []
  assert versions.versions(base) == [1, 2]


def test_a_temporary_without_a_lock_is_an_earlier_releases_leftover(
    tmp_path):
  base = tmp_path / 'serving'
  (base / '.tmp-0123abcd').mkdir(parents=True)  # no .lock beside it
  (base / '.tmp-0123abcd' / 'saved_model.pb').write_text('half')
  versions.publish(str(base), _stand_in)
  assert _temporaries(str(base)) == []


def test_a_failed_write_leaves_nothing(tmp_path):
  base = str(tmp_path / 'serving')

  def failing(tmp_dir):
    os.makedirs(tmp_dir)
    raise OSError('disk full')

  with pytest.raises(OSError, match='disk full'):
    versions.publish(base, failing)
  assert os.listdir(base) == []


def test_pruning_leaves_no_temporary_behind(tmp_path):
  base = str(tmp_path / 'serving')
  for _ in range(3):
    versions.publish(base, _stand_in)
  assert versions.prune(base, keep=1) == [1, 2]
  assert versions.versions(base) == [3]
  assert _temporaries(base) == []
