"""A training as N processes on this machine, each a replica.

Each process is started with its TF_CONFIG over free ports of 127.0.0.1, so
that MultiWorkerMirroredStrategy joins them (trainer/cluster.py); their
output is streamed, each line prefixed with its replica. When one fails,
the others are stopped at once and the training fails with that replica's
last lines: a replica left alone would wait for the failed one in its next
collective op.
"""
import collections
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Deque, List, Mapping, Optional, Sequence

from imgcls.trainer import cluster

# Lines of a failed replica's output quoted in the failure.
TAIL_LINES = 30
# After a replica has finished, the time the others get to finish too: they
# are past the last collective op by then (trainer/training.py,
# after_export), and one that does not end is stuck.
FINISH_GRACE_S = 120.0
# Between SIGTERM and SIGKILL of a replica being stopped.
_STOP_GRACE_S = 10.0
_POLL_S = 0.2


class ReplicaFailed(RuntimeError):
  """A replica ended without training to the end; names it and its lines."""


def free_ports(count: int) -> List[int]:
  """Ports of 127.0.0.1 free now (each bound, then released together)."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket()
      s.bind(('127.0.0.1', 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


@dataclasses.dataclass
class _Replica:
  index: int
  process: subprocess.Popen
  tail: Deque[str]
  reader: threading.Thread

  def describe_exit(self) -> str:
    code = self.process.returncode
    if code is not None and code < 0:
      return f'was killed by {signal.Signals(-code).name}'
    return f'exited with status {code}'


def run(command: Sequence[str], count: int, *,
        env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
        output: Callable[[str], None] = None) -> None:
  """Runs `command` as `count` replicas; returns once all have succeeded.

  `output` takes every line of every replica, prefixed (stderr unless
  given). Raises ReplicaFailed once a replica fails, or when the others do
  not finish within FINISH_GRACE_S of the first that did; the others are
  stopped first. Interrupted (Ctrl-C), it stops them all too.
  """
  output = output or _to_stderr
  addresses = [f'127.0.0.1:{port}' for port in free_ports(count)]
  replicas = []
  try:
    for index in range(count):
      replicas.append(_start(command, index, addresses, env, cwd, output))
    _wait(replicas)
  finally:
    _stop(replicas)


def _start(command, index, addresses, env, cwd, output) -> _Replica:
  environ = dict(os.environ if env is None else env)
  environ[cluster.TF_CONFIG] = cluster.tf_config(addresses, index)
  # A process group of its own, so that stopping it stops its children.
  process = subprocess.Popen(
      list(command), env=environ, cwd=cwd, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, errors='replace',
      start_new_session=True)
  tail = collections.deque(maxlen=TAIL_LINES)
  reader = threading.Thread(target=_stream, daemon=True,
                            args=(process.stdout, index, tail, output))
  reader.start()
  return _Replica(index, process, tail, reader)


def _stream(stream, index: int, tail: Deque[str], output) -> None:
  for line in stream:
    line = line.rstrip('\n')
    tail.append(line)
    output(f'[replica {index}] {line}')


def _to_stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _wait(replicas: List[_Replica]) -> None:
  finished_at = None
  while True:
    running = [r for r in replicas if r.process.poll() is None]
    failed = [r for r in replicas if r.process.returncode not in (None, 0)]
    if failed:
      _stop(replicas)
      raise _failure(failed[0], len(replicas))
    if not running:
      return
    if finished_at is None and len(running) < len(replicas):
      finished_at = time.monotonic()
    if finished_at is not None and (
        time.monotonic() - finished_at > FINISH_GRACE_S):
      _stop(replicas)
      raise ReplicaFailed(
          f'replica {running[0].index} of {len(replicas)} did not finish '
          f'within {FINISH_GRACE_S:g} s of the others; stopped. Its last '
          'lines:\n' + _lines(running[0]))
    time.sleep(_POLL_S)


def _failure(replica: _Replica, count: int) -> ReplicaFailed:
  return ReplicaFailed(
      f'replica {replica.index} of {count} {replica.describe_exit()}; the '
      'others were stopped and nothing of this training is kept. Its last '
      'lines:\n' + _lines(replica))


def _lines(replica: _Replica) -> str:
  replica.reader.join(timeout=5)
  return '\n'.join(f'  {line}' for line in replica.tail) or '  (none)'


def _stop(replicas: List[_Replica]) -> None:
  """SIGTERM to those still running, SIGKILL to those still running after
  _STOP_GRACE_S."""
  running = [r for r in replicas if r.process.poll() is None]
  for r in running:
    _signal(r.process, signal.SIGTERM)
  deadline = time.monotonic() + _STOP_GRACE_S
  for r in running:
    try:
      r.process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      _signal(r.process, signal.SIGKILL)
      r.process.wait()


def _signal(process: subprocess.Popen, signum: int) -> None:
  try:
    os.killpg(process.pid, signum)
  except ProcessLookupError:
    pass
