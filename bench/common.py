"""What every benchmark shares: the settings of a session, results, timing.

A benchmark is a function `run(session) -> Result`. It measures its figure
and the figure's floor or peer in the same process, one after the other, so
both see the same machine in the same state.
"""
import dataclasses
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence


@dataclasses.dataclass(frozen=True)
class Session:
  """Where and how big: full size for the doc, quick to keep scripts working."""
  quick: bool
  work_dir: str  # data and outputs, reused between runs where unchanged
  mnist_dir: str
  # Rounds of the pipeline benchmark, the best counting; None: its own
  # default. One round of its long runs fits a busy day.
  rounds: Optional[int] = None


@dataclasses.dataclass
class Figure:
  """One measured figure beside its floor or peer, and its target."""
  name: str
  value: float
  unit: str
  peer_name: str = ''
  peer_value: Optional[float] = None
  target: str = ''  # '' for figures without one
  met: Optional[bool] = None  # None: no target


@dataclasses.dataclass
class Result:
  """What one benchmark found, with where and when, for the doc."""
  name: str
  title: str
  setup: str  # what was measured, and how, in a sentence or two (Markdown)
  figures: List[Figure]
  # Raw measurements as a table: a header row, then rows (Markdown cells).
  details: List[List[str]] = dataclasses.field(default_factory=list)
  notes: List[str] = dataclasses.field(default_factory=list)  # the whys
  quick: bool = False
  machine: Dict[str, str] = dataclasses.field(default_factory=dict)


def load_average() -> str:
  """The 1, 5 and 15 minute load averages: the machine may be shared, and
  other work slows what is measured."""
  return ', '.join(f'{x:.2f}' for x in os.getloadavg())


def machine(load_at_start: str) -> Dict[str, str]:
  """The facts a figure depends on, recorded with each result at its end."""
  import tensorflow as tf  # slow
  cpu = _proc_field('/proc/cpuinfo', 'model name') or platform.processor()
  memory_kb = _proc_field('/proc/meminfo', 'MemTotal')
  memory = (f'{int(memory_kb.split()[0]) / 2**20:.1f} GiB'
            if memory_kb else 'unknown')
  gpus = [d.name for d in tf.config.list_physical_devices('GPU')]
  return {
      'date': datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%d %H:%M UTC'),
      'cpu': cpu,
      'cores': str(len(os.sched_getaffinity(0))),
      'memory': memory,
      'gpu': ', '.join(gpus) or 'none',
      'load at start': load_at_start,
      'load at end': load_average(),
      'python': platform.python_version(),
      'commit': _commit(),
  }


def _commit() -> str:
  """What was measured: the code changes while people work on it."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=repo,
                          capture_output=True, text=True, check=True).stdout
    changed = subprocess.run(['git', 'status', '--porcelain',
                              '--untracked-files=no'], cwd=repo,
                             capture_output=True, text=True,
                             check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
  return head.strip() + (' with uncommitted changes' if changed else '')


def _proc_field(path: str, field: str) -> Optional[str]:
  try:
    with open(path) as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == field:
          return value.strip()
  except OSError:
    pass
  return None


class Timer:
  """`with Timer() as t: ...` then `t.seconds`."""

  def __enter__(self) -> 'Timer':
    self._start = time.perf_counter()
    return self

  def __exit__(self, *exc_info) -> None:
    self.seconds = time.perf_counter() - self._start


def percentile(values: Sequence[float], percent: float) -> float:
  """The nearest-rank percentile: a value that was actually observed."""
  ordered = sorted(values)
  rank = max(1, -(-len(ordered) * percent // 100))
  return ordered[int(rank) - 1]


def median(values: Sequence[float]) -> float:
  return statistics.median(values)


def fit_line(points: Sequence[Sequence[float]]):
  """(slope, intercept) through two or more (x, y) points, least squares."""
  xs, ys = zip(*points)
  mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
  slope = (sum((x - mean_x) * (y - mean_y) for x, y in points) /
           sum((x - mean_x)**2 for x in xs))
  return slope, mean_y - slope * mean_x


def run_command(args: Sequence[str], log_path: str) -> float:
  """Runs `python -m <args>` in this environment; returns its wall time.

  The output goes to log_path; a failure raises with the log's tail, since a
  benchmark of a failed command means nothing.
  """
  with open(log_path, 'w') as log, Timer() as timer:
    code = subprocess.call([sys.executable, '-m', *args], stdout=log,
                           stderr=subprocess.STDOUT)
  if code:
    with open(log_path) as f:
      tail = f.read()[-3000:]
    raise RuntimeError(f'{" ".join(args)} exited {code}; log {log_path}:\n'
                       f'{tail}')
  return timer.seconds


def fmt(value: Optional[float], digits: int = 4) -> str:
  """A figure with `digits` significant digits, for tables."""
  if value is None:
    return '-'
  return f'{value:,.{digits}g}' if abs(value) < 10**digits else f'{value:,.0f}'
