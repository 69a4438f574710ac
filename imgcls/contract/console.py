"""The console of a command: progress on the terminal, the rest in a log.

TFX, Beam, TensorFlow and Keras each write to the terminal: absl warnings,
CUDA probing and oneDNN notices from C++ before Python logging exists,
Keras' per-epoch lines. A user running `imgcls run`, or any other command,
wants to know what the command is doing and what it found. So while a
command runs (imgcls/cli.py enters a console for every one), file
descriptors 1 and 2 and Python's sys.stderr point at a log file, and only
these reach the terminal: a line as each TFX component starts and ends, with
its time and key result (`describe`); what the steps `progress.report`
(epochs, for one); the records of the command's own `terminal_loggers` (a
server's); and what the command prints to sys.stdout, its own output. `-v`
shows the log too.
"""
import errno
import logging
import os
import re
import stat
import sys
import tempfile
import time
from typing import Callable, List, Optional, Sequence, TextIO

from absl import logging as absl_logging

from imgcls.contract import progress

# LocalDagRunner's own log lines around each component
# (tfx/orchestration/local/local_dag_runner.py), and the launcher's on a
# cache hit (tfx/orchestration/portable/launcher.py).
_STARTED = re.compile(r'^Component (\S+) is running\.$')
_FINISHED = re.compile(r'^Component (\S+) is finished\.$')
_CACHED = re.compile(r'^A cached execution \d+ is used\.$')
_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'
# Beside the MLMD store, or the models a command writes.
LOG_FILE = 'imgcls.log'


class ComponentLines(logging.Handler):
  """Turns LocalDagRunner's log lines into one console line per component
  start and end; `describe(node_id)` gives the end line's key result."""

  def __init__(self, describe: Callable[[str], str]):
    super().__init__(logging.INFO)
    self._describe = describe
    self._started = {}
    self._cached = False

  def emit(self, record: logging.LogRecord) -> None:
    message = record.getMessage()
    started, finished = _STARTED.match(message), _FINISHED.match(message)
    if started:
      self._started[started.group(1)] = time.monotonic()
      self._cached = False
      progress.report('%s ...', started.group(1))
    elif _CACHED.match(message):
      self._cached = True
    elif finished:
      node = finished.group(1)
      seconds = time.monotonic() - self._started.pop(node, time.monotonic())
      result = _safely(self._describe, node)
      cached = ' (cached)' if self._cached else ''
      progress.report('%s done in %.1fs%s%s', node, seconds, cached,
                      f': {result}' if result else '')


def log_path(directory: Optional[str], command: str) -> str:
  """`<directory>/imgcls.log` for commands that work in a directory of their
  own (a pipeline root), else `<command>.log` in this user's own folder of
  the temp folder, `imgcls-<uid>`: a command that refuses its input must
  leave no new directory behind, and users who share a machine (or uids that
  share an image) must not share, or be able to plant, each other's log."""
  if directory:
    return os.path.join(directory, LOG_FILE)
  return os.path.join(_users_temp_folder(), f'{command}.log')


def _users_temp_folder() -> str:
  return os.path.join(tempfile.gettempdir(), f'imgcls-{os.geteuid()}')


def _open_log(path: str) -> TextIO:
  """The log, opened for appending: never through a symlink (O_NOFOLLOW),
  and in the temp folder only inside a folder that is this user's alone."""
  directory = os.path.dirname(os.path.abspath(path))
  if directory == os.path.abspath(_users_temp_folder()):
    _private_directory(directory)
  else:
    os.makedirs(directory, exist_ok=True)
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW |
               os.O_CLOEXEC, 0o600)
  return os.fdopen(fd, 'a', buffering=1, encoding='utf-8',
                   errors='backslashreplace')


def _private_directory(path: str) -> None:
  """Made 0700 if missing; refused unless a real directory of this user's
  that no one else may write (another user could have made it first)."""
  try:
    os.mkdir(path, 0o700)
  except FileExistsError:
    pass
  info = os.lstat(path)
  if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or
      info.st_mode & 0o022):
    raise PermissionError(errno.EPERM, 'not a directory of this user alone',
                          path)


def _safely(describe, node: str) -> str:
  """A failing description must not fail the run it describes."""
  try:
    return describe(node)
  except Exception as e:
    logging.getLogger(__name__).warning('cannot describe %s: %s', node, e)
    return ''


class Console:
  """While entered: logs to `log_path`, progress to the terminal.

  Consoles nest: imgcls/cli.py enters one for every command, from before the
  command's handler imports TensorFlow, and a command that works in a
  directory of its own (`imgcls run`, `imgcls retrain`) enters its own
  inside it. The inner one takes the log over until it exits; the terminal
  stays the one the outermost console saved.
  """

  def __init__(self, log_path: str, verbose: bool,
               describe: Optional[Callable[[str], str]] = None,
               terminal_loggers: Sequence[str] = ()):
    """`terminal_loggers`: the command's own loggers whose records are its
    output (a server's), shown on the terminal as well as logged."""
    self.log_path = log_path
    self._verbose = verbose
    self._describe = describe
    self._terminal_loggers = terminal_loggers
    self._saved = None
    self._terminal = ()  # streams this console opened on the terminal

  def __enter__(self) -> 'Console':
    self._outer = _entered[-1] if _entered else None
    terminal_out = sys.stdout
    self.terminal_err = (self._outer.terminal_err if self._outer else
                         sys.stderr)
    try:
      self._log = _open_log(self.log_path)
    except OSError as e:
      # The command still runs, and without a log nothing of it is hidden.
      print(f'imgcls: cannot write the log {self.log_path} ({e.strerror or e}'
            '); its lines are shown here instead', file=self.terminal_err,
            flush=True)
      self._log = open(os.devnull, 'w', encoding='utf-8')
      self._verbose = True
    if not self._verbose:
      terminal_out, self.terminal_err = self._redirect_to_log()
    progress.set_console(self.terminal_err)
    self._handlers = [
        (logging.getLogger(), _handler(self._log, _FORMAT, logging.INFO)),
        (logging.getLogger(progress.LOGGER_NAME),
         _handler(self.terminal_err, '%(message)s', logging.INFO)),
    ]
    if self._verbose:
      self._handlers.append((logging.getLogger(), _handler(
          self.terminal_err, _FORMAT, logging.INFO)))
    if self._describe:
      self._handlers.append(
          (logging.getLogger('absl'), ComponentLines(self._describe)))
    if not self._verbose:  # with -v, the root's terminal handler has them
      self._handlers += [(logging.getLogger(name), _handler(
          self.terminal_err, '%(asctime)s %(message)s', logging.INFO))
                         for name in self._terminal_loggers]
    # The handlers already there (basicConfig's, absl's, an outer
    # console's) write to the terminal or the outer log: this log has all
    # their records already.
    self._replaced = [(logger, handler)
                      for logger in (logging.getLogger(),
                                     logging.getLogger(progress.LOGGER_NAME))
                      for handler in logger.handlers[:]]
    for logger, handler in self._replaced:
      logger.removeHandler(handler)
    for logger, handler in self._handlers:
      logger.addHandler(handler)
    self._levels = _set_levels(logging.INFO)
    _entered.append(self)
    return self

  def __exit__(self, *exc_info) -> None:
    _entered.pop()
    for logger, handler in self._handlers:
      logger.removeHandler(handler)
    for logger, handler in self._replaced:
      logger.addHandler(handler)
    _restore_levels(self._levels)
    if self._saved:
      self._restore_terminal()
    progress.set_console(self._outer.terminal_err if self._outer else None)
    self._log.close()

  def _redirect_to_log(self):
    """Points fds 1 and 2 and sys.stderr at the log, sys.stdout at the
    terminal; returns streams to the terminal as it was."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = (os.dup(1), os.dup(2))
    self._saved = (saved_fds, sys.stdout, sys.stderr)
    if self._outer and self._outer._saved:
      # fds 1 and 2 are the outer log: the terminal is the outer's streams.
      terminal = (sys.stdout, self._outer.terminal_err)
    else:
      terminal = self._terminal = tuple(
          _stream_on(stream, fd)
          for stream, fd in ((sys.stdout, saved_fds[0]),
                             (sys.stderr, saved_fds[1])))
    os.dup2(self._log.fileno(), 1)
    os.dup2(self._log.fileno(), 2)
    sys.stdout, sys.stderr = terminal[0], self._log
    return terminal

  def _restore_terminal(self) -> None:
    (out_fd, err_fd), sys.stdout, sys.stderr = self._saved
    for stream in self._terminal:
      stream.flush()
      if stream not in (sys.stdout, sys.stderr):
        stream.close()
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.close(out_fd)
    os.close(err_fd)


# The consoles entered, innermost last.
_entered: List[Console] = []


def _stream_on(stream: TextIO, saved_fd: int) -> TextIO:
  """The terminal after the redirect: a new stream on the saved descriptor
  where `stream` wrote to a real one, else `stream` itself (pytest's capture,
  say, which the redirect does not touch)."""
  try:
    stream.fileno()
  except (AttributeError, OSError, ValueError):
    return stream
  return os.fdopen(os.dup(saved_fd), 'w', buffering=1, encoding='utf-8',
                   errors='backslashreplace', closefd=True)


def _handler(stream: TextIO, fmt: str, level: int) -> logging.Handler:
  handler = logging.StreamHandler(stream)
  handler.setFormatter(logging.Formatter(fmt))
  handler.setLevel(level)
  return handler


# Loggers whose INFO records belong in the log (TFX logs through absl).
_LOGGERS = ('', 'tensorflow', progress.LOGGER_NAME)


def _set_levels(level: int):
  """INFO everywhere. absl's level is its verbosity flag, not the logger's:
  TensorFlow silences absl while it saves and then restores the flag's value
  (tensorflow/python/trackable/autotrackable.py), so set the flag."""
  saved = ({name: logging.getLogger(name).level for name in _LOGGERS},
           absl_logging.get_verbosity())
  for name in _LOGGERS:
    logging.getLogger(name).setLevel(level)
  absl_logging.set_verbosity(absl_logging.converter.standard_to_absl(level))
  return saved


def _restore_levels(saved) -> None:
  levels, verbosity = saved
  for name, level in levels.items():
    logging.getLogger(name).setLevel(level)
  absl_logging.set_verbosity(verbosity)
