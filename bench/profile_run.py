"""Where a run's fixed seconds go: `imgcls run` under cProfile, by part.

    python -m bench.profile_run --profile-dir DIR -- run --data-root ...

runs `imgcls` in this process with one cProfile per part of the run, each
dumped to DIR/<n>-<part>.prof (read them with `python -m pstats` or
`bench.profile_run.top`):

- `startup`: from this module's start to the first component (imports,
  argument parsing, the console, building and compiling the pipeline);
- one per component: LocalDagRunner launches them one after the other on
  this thread (tfx/orchestration/local/local_dag_runner.py, run_with_ir), so
  a profile around `Launcher.launch` holds that component alone;
- `orchestration`: between components (LocalDagRunner, the console's
  line per component, read back from MLMD);
- `report`: from LocalDagRunner's return to `imgcls run`'s (the run's
  summary read back from MLMD, the report).

DIR/phases.json holds the wall seconds of each part, a component's split
into the launcher's steps (tfx/orchestration/portable/launcher.py,
Launcher.launch):
preparing (driver, MLMD registration, cache lookup), the executor, and
publishing (MLMD). The interpreter's exit comes after all of this and cannot
be profiled: `profile` (below) times the process and reports the rest as
`exit`, and the interpreter's start before this module as part of
`startup`. cProfile slows Python code several times over (Beam's
DirectRunner most): read the profiles for shares, and seconds from a run
with --no-profile, as bench.whole_pipeline does.
"""
import time

_STARTED = time.time()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
from typing import Dict, List, Tuple  # noqa: E402

from bench import common  # noqa: E402
from imgcls import cli  # noqa: E402  (light: commands import TFX inside)

PHASES = 'phases.json'


class _Parts:
  """One profiler at a time, switched at the launcher's boundaries."""

  def __init__(self, out: str, enabled: bool):
    self.out, self.enabled = out, enabled
    self.walls: Dict[str, float] = {}
    self.steps: Dict[str, Dict[str, float]] = {}
    self._count = 0
    self._name, self._since = 'startup', _STARTED
    self._profile = self._start()

  def _start(self):
    if not self.enabled:
      return None
    profile = cProfile.Profile()
    profile.enable()
    return profile

  def switch(self, name: str) -> None:
    """Ends the current part, dumps its profile, starts `name`."""
    now = time.time()
    self.walls[self._name] = self.walls.get(self._name, 0) + now - self._since
    if self._profile:
      self._profile.disable()
      self._profile.dump_stats(
          os.path.join(self.out, f'{self._count:02d}-{self._name}.prof'))
    self._count += 1
    self._name, self._since = name, now
    self._profile = self._start()

  def write(self, returned: float) -> None:
    with open(os.path.join(self.out, PHASES), 'w', encoding='utf-8') as f:
      json.dump({'parts': self.walls, 'launcher_steps': self.steps,
                 'returned': returned, 'started': _STARTED}, f, indent=1)


def _instrument(parts: _Parts) -> None:
  """Wraps Launcher.launch (a part each) and its steps (wall times), and
  LocalDagRunner.run_with_ir (the report starts on its return)."""
  from tfx.orchestration.local import local_dag_runner
  from tfx.orchestration.portable import launcher
  cls = launcher.Launcher
  runner = local_dag_runner.LocalDagRunner
  run_with_ir = runner.run_with_ir

  def ran(self, *args, **kwargs):
    try:
      return run_with_ir(self, *args, **kwargs)
    finally:
      parts.switch('report')

  runner.run_with_ir = ran

  def timed(step, method):
    def wrapper(self, *args, **kwargs):
      node = self._pipeline_node.node_info.id
      started = time.time()
      try:
        return method(self, *args, **kwargs)
      finally:
        steps = parts.steps.setdefault(node, {})
        steps[step] = steps.get(step, 0) + time.time() - started
    return wrapper

  launch = cls.launch

  def launched(self):
    parts.switch(self._pipeline_node.node_info.id)
    try:
      return launch(self)
    finally:
      parts.switch('orchestration')

  for step, name in (('prepare', '_prepare_execution'),
                     ('executor', '_run_executor'),
                     ('publish', '_publish_successful_execution')):
    setattr(cls, name, timed(step, getattr(cls, name)))
  cls.launch = launched


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--profile-dir', required=True)
  parser.add_argument('--no-profile', action='store_true',
                      help='wall times only, without cProfile\'s overhead')
  parser.add_argument('imgcls_args', nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  os.makedirs(args.profile_dir, exist_ok=True)
  parts = _Parts(args.profile_dir, not args.no_profile)
  _instrument(parts)
  imgcls_args = [a for a in args.imgcls_args if a != '--']
  try:
    return cli.main(imgcls_args)
  finally:
    parts.switch('exit')
    parts.write(time.time())


def profile(imgcls_args: List[str], profile_dir: str, log: str,
            with_cprofile: bool = True) -> Tuple[float, Dict[str, float]]:
  """Runs `imgcls ARGS` under this module in a new process; returns its wall
  seconds and their parts, in run order, `exit` last."""
  started = time.time()
  seconds = common.run_command(
      ['bench.profile_run', '--profile-dir', profile_dir,
       *([] if with_cprofile else ['--no-profile']), '--', *imgcls_args], log)
  with open(os.path.join(profile_dir, PHASES), encoding='utf-8') as f:
    phases = json.load(f)
  walls = dict(phases['parts'])
  walls['startup'] += phases['started'] - started  # the interpreter's start
  walls.pop('exit', None)
  walls['exit'] = started + seconds - phases['returned']
  return seconds, walls


def top(path: str, count: int = 25, sort: str = 'cumulative') -> str:
  """The `count` costliest functions of one dump, as pstats prints them."""
  import io
  text = io.StringIO()
  pstats.Stats(path, stream=text).sort_stats(sort).print_stats(count)
  return text.getvalue()


if __name__ == '__main__':
  cli.exit_process(main())  # as the console script ends
