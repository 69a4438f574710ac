"""What a person at the console is told while a command works.

Every step may report progress (a component's result, an epoch) through
`report`, and draw a progress bar on `console()`. The command line decides
where they go (imgcls/contract/console.py, entered for every command by
imgcls/cli.py): to the terminal, while everything else that libraries log or
print goes to a log file. Outside the command line
(tests, notebooks, a Kubeflow step) they are plain log records and stderr.
"""
import logging
import sys
from typing import TextIO

LOGGER_NAME = 'imgcls.progress'
_logger = logging.getLogger(LOGGER_NAME)
_console: TextIO = None


def report(message: str, *args) -> None:
  _logger.info(message, *args)


def warn(message: str, *args) -> None:
  """What a person must see even when all goes on: a skipped file, say."""
  _logger.warning(message, *args)


def console() -> TextIO:
  """The terminal, for progress bars: stderr unless the command line has
  sent stderr to the log file."""
  return _console or sys.stderr


def set_console(stream: TextIO) -> None:
  global _console
  _console = stream
