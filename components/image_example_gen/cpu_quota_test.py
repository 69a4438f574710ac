"""Reader threads follow the cgroup's CPU quota, over fake cgroup trees."""
import os

import pytest

from imgcls.components.image_example_gen import cpu_quota


def _tree(tmp_path, proc_cgroup: str, files: dict):
  for relative, text in files.items():
    path = tmp_path / 'cgroup' / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + '\n')
  (tmp_path / 'proc').write_text(proc_cgroup)
  return str(tmp_path / 'cgroup'), str(tmp_path / 'proc')


@pytest.mark.parametrize('proc, files, expected', [
    # cgroup v2 in a container's cgroup namespace: the root is its cgroup.
    ('0::/\n', {'cpu.max': '150000 100000'}, 1.5),
    ('0::/\n', {'cpu.max': 'max 100000'}, None),
    # v2 without a namespace: the pod's path, whose parent is tighter.
    ('0::/kubepods/pod1/ctr\n',
     {'kubepods/pod1/ctr/cpu.max': '400000 100000',
      'kubepods/pod1/cpu.max': '200000 100000',
      'kubepods/cpu.max': 'max 100000'}, 2.0),
    # cgroup v1, the cpu controller mounted with cpuacct.
    ('12:memory:/\n4:cpu,cpuacct:/\n',
     {'cpu,cpuacct/cpu.cfs_quota_us': '100000',
      'cpu,cpuacct/cpu.cfs_period_us': '100000'}, 1.0),
    ('4:cpu,cpuacct:/kubepods/pod1/ctr\n',
     {'cpu,cpuacct/kubepods/pod1/ctr/cpu.cfs_quota_us': '50000',
      'cpu,cpuacct/kubepods/pod1/ctr/cpu.cfs_period_us': '100000'}, 0.5),
    ('4:cpu,cpuacct:/\n', {'cpu,cpuacct/cpu.cfs_quota_us': '-1',
                           'cpu,cpuacct/cpu.cfs_period_us': '100000'}, None),
    # Nothing readable: no quota.
    ('', {}, None),
])
def test_the_quota_is_read_from_v1_and_v2_cgroups(tmp_path, proc, files,
                                                  expected):
  root, proc_cgroup = _tree(tmp_path, proc, files)
  assert cpu_quota.cpu_quota(root, proc_cgroup) == expected


def test_threads_follow_the_quota_not_the_nodes_cores(tmp_path):
  cores = len(os.sched_getaffinity(0))
  root, proc_cgroup = _tree(tmp_path, '0::/\n', {'cpu.max': '100000 100000'})
  assert cpu_quota.usable_cpus(root, proc_cgroup) == 1
  # A fraction of a CPU still gets a thread.
  root, proc_cgroup = _tree(tmp_path, '0::/\n', {'cpu.max': '25000 100000'})
  assert cpu_quota.usable_cpus(root, proc_cgroup) == 1
  # No quota: the CPUs the process may run on.
  root, proc_cgroup = _tree(tmp_path, '0::/\n', {'cpu.max': 'max 100000'})
  assert cpu_quota.usable_cpus(root, proc_cgroup) == cores
