"""How many CPUs this process may use: its cgroup's quota, not the node's cores.

In a pod, os.cpu_count() is the node's core count; the container's CPU limit
is a CFS quota in its cgroup. Threads beyond the quota only queue for it, and
each holds a decoded image in memory while it waits. Kubernetes writes the
limit as cpu.max (cgroup v2: "<quota> <period>", or "max <period>") or as
cpu.cfs_quota_us and cpu.cfs_period_us (cgroup v1, -1 for none), in the
cgroup that /proc/self/cgroup names (linux Documentation/admin-guide/
cgroup-v2.rst, "cpu.max"; cgroup-v1/cfs docs, scheduler/sched-bwc.rst).
A nested cgroup is bounded by its parents too, so each level up to the
mount's root counts.
"""
import math
import os
from typing import Iterator, Optional, Tuple

CGROUP_ROOT = '/sys/fs/cgroup'
PROC_CGROUP = '/proc/self/cgroup'


def usable_cpus(cgroup_root: str = CGROUP_ROOT,
                proc_cgroup: str = PROC_CGROUP) -> int:
  """The CPUs this process may run on and has quota for, at least 1."""
  cpus = len(os.sched_getaffinity(0))
  quota = cpu_quota(cgroup_root, proc_cgroup)
  if quota is not None:
    cpus = min(cpus, math.ceil(quota))
  return max(1, cpus)


def cpu_quota(cgroup_root: str = CGROUP_ROOT,
              proc_cgroup: str = PROC_CGROUP) -> Optional[float]:
  """The smallest CPU quota (quota / period, in CPUs) of this process's
  cgroup and its parents, or None when there is none or it cannot be read."""
  quotas = [q for q in map(_read_quota, _cgroup_dirs(cgroup_root,
                                                     proc_cgroup))
            if q is not None]
  return min(quotas) if quotas else None


def _cgroup_dirs(cgroup_root: str, proc_cgroup: str) -> Iterator[str]:
  """The process's cgroup directories and their parents, for the v2
  hierarchy and v1's cpu controller. Inside a container's cgroup namespace
  the path is `/`, and the mount root is the container's cgroup."""
  for version_dir, path in _memberships(cgroup_root, proc_cgroup):
    parts = [p for p in path.split('/') if p]
    for depth in range(len(parts), -1, -1):
      directory = os.path.join(version_dir, *parts[:depth])
      if os.path.isdir(directory):
        yield directory


def _memberships(cgroup_root: str,
                 proc_cgroup: str) -> Iterator[Tuple[str, str]]:
  """(the hierarchy's mount directory, the process's path in it)."""
  try:
    with open(proc_cgroup) as f:
      lines = f.read().splitlines()
  except OSError:
    lines = []
  for line in lines:
    hierarchy, _, rest = line.partition(':')
    controllers, _, path = rest.partition(':')
    if hierarchy == '0' and not controllers:
      yield cgroup_root, path
    elif 'cpu' in controllers.split(','):
      for name in (controllers, 'cpu,cpuacct', 'cpu'):
        if os.path.isdir(os.path.join(cgroup_root, name)):
          yield os.path.join(cgroup_root, name), path
          break
  if not lines:
    yield cgroup_root, '/'


def _read_quota(directory: str) -> Optional[float]:
  v2 = _read(os.path.join(directory, 'cpu.max'))
  if v2 is not None:
    quota, _, period = v2.partition(' ')
    if quota == 'max' or not period:
      return None
    return int(quota) / int(period)
  quota = _read(os.path.join(directory, 'cpu.cfs_quota_us'))
  period = _read(os.path.join(directory, 'cpu.cfs_period_us'))
  if quota is None or period is None or int(quota) < 0:
    return None
  return int(quota) / int(period)


def _read(path: str) -> Optional[str]:
  try:
    with open(path) as f:
      return f.read().strip()
  except (OSError, ValueError):
    return None
