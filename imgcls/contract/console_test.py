"""The console (imgcls/contract/console.py) that imgcls/cli.py enters for
every command, and the one `run` and `retrain` enter inside it: run in a
child process, so that what is written to file descriptor 2, as TensorFlow's
C++ does, is seen as a terminal would see it."""
import os
import pathlib
import stat
import subprocess
import sys
import textwrap

import pytest

_NESTED = textwrap.dedent('''
    import logging, os, sys
    from imgcls.contract import console, progress
    outer_log, inner_log, verbose = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    with console.Console(outer_log, verbose):
      os.write(2, b"C++ start-up\\n")
      with console.Console(inner_log, verbose):
        os.write(2, b"C++ in the pipeline\\n")
        logging.getLogger("tfx").warning("a library")
        progress.report("Trainer done")
        print("the output")
      progress.report("after the pipeline")
    print("outside", file=sys.stderr)
''')


def _run(tmp_path, verbose):
  outer, inner = tmp_path / 'outer.log', tmp_path / 'inner.log'
  done = subprocess.run(
      [sys.executable, '-c', _NESTED, str(outer), str(inner),
       '1' if verbose else '0'],
      capture_output=True, text=True, timeout=120, check=True)
  return done, outer.read_text(), inner.read_text()


def test_nested_consoles_log_what_libraries_print_and_show_progress_once(
    tmp_path):
  done, outer, inner = _run(tmp_path, verbose=False)
  assert done.stdout == 'the output\n'
  assert done.stderr == 'Trainer done\nafter the pipeline\noutside\n'
  assert 'C++ start-up' in outer and 'C++ in the pipeline' not in outer
  assert 'C++ in the pipeline' in inner and 'a library' in inner
  assert 'Trainer done' in inner and 'after the pipeline' in outer


def test_verbose_lets_everything_through(tmp_path):
  done, _, inner = _run(tmp_path, verbose=True)
  assert 'C++ start-up' in done.stderr and 'a library' in done.stderr
  assert 'a library' in inner  # and still logged


# --- Where the log goes -------------------------------------------------------

_LOGGED = textwrap.dedent('''
    import sys
    from imgcls.contract import console
    with console.Console(console.log_path(None, "sample-data"), False) as c:
      print("the output")
      print("for the log", file=sys.stderr)
    print(c.log_path)
''')


def _shared_temp(tmp_path):
  """A temp folder as /tmp is: sticky and world-writable, reachable by all."""
  shared = tmp_path / 'tmp'
  shared.mkdir()
  shared.chmod(0o1777)
  for parent in (tmp_path, *tmp_path.parents):
    parent.chmod(parent.stat().st_mode | 0o055)
  return shared


def _log_as(shared, user=None, group=None):
  return subprocess.run(
      [sys.executable, '-c', _LOGGED], user=user, group=group,
      env={**os.environ, 'TMPDIR': str(shared)}, capture_output=True,
      text=True, timeout=120, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason='switching uids needs root')
def test_two_users_of_one_temp_folder_each_get_a_log_of_their_own(tmp_path):
  """One image run as uid 1000, then as 12345 with gid 0 (OpenShift's
  arbitrary uid): a fixed name in the shared temp folder would be the first
  user's file, which the second may not append to."""
  shared = _shared_temp(tmp_path)
  for user, group in ((1000, 1000), (12345, 0)):
    done = _log_as(shared, user, group)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ''
    log = pathlib.Path(done.stdout.splitlines()[-1])
    assert log == shared / f'imgcls-{user}' / 'sample-data.log'
    assert 'for the log' in log.read_text()
    info = log.parent.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (user, 0o700)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason='planting as another uid needs '
                    'root')
def test_a_planted_log_folder_or_symlink_is_refused_and_the_command_runs(
    tmp_path):
  shared = _shared_temp(tmp_path)
  # Another user made uid 1000's folder first, open to all.
  planted = shared / 'imgcls-1000'
  planted.mkdir(mode=0o777)
  os.chown(planted, 12345, 0)
  planted.chmod(0o777)
  done = _log_as(shared, 1000, 1000)
  assert done.returncode == 0, done.stderr
  assert done.stdout.startswith('the output\n')
  assert 'cannot write the log' in done.stderr
  assert 'for the log' in done.stderr  # shown, not lost
  assert not list(planted.iterdir())
  # A symlink where the log would be, pointing at a file of the user's.
  mine = shared / 'imgcls-0'
  mine.mkdir(mode=0o700)
  victim = tmp_path / 'victim'
  victim.write_text('keep\n')
  (mine / 'sample-data.log').symlink_to(victim)
  done = _log_as(shared)
  assert done.returncode == 0, done.stderr
  assert 'cannot write the log' in done.stderr
  assert victim.read_text() == 'keep\n'
