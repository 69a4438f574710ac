"""The console (imgcls/contract/console.py) that imgcls/cli.py enters for
every command, and the one `run` and `retrain` enter inside it: run in a
child process, so that what is written to file descriptor 2, as TensorFlow's
C++ does, is seen as a terminal would see it."""
import subprocess
import sys
import textwrap

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
