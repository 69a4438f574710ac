"""Which replica of a training this process is: TensorFlow's TF_CONFIG.

TF_CONFIG is what MultiWorkerMirroredStrategy reads (tensorflow/tensorflow:
tensorflow/python/distribute/cluster_resolver/tfconfig_cluster_resolver.py);
the launchers write it for each replica, and training reads it here to know
how many replicas there are, which one this is and which one is the chief.
No TensorFlow import: the launchers run without it.
"""
import dataclasses
import json
import os
from typing import Mapping, Optional, Sequence

TF_CONFIG = 'TF_CONFIG'
WORKER = 'worker'
_CHIEF = 'chief'


@dataclasses.dataclass(frozen=True)
class Replica:
  """This process's place among `count` replicas.

  `index` is TensorFlow's id in the cluster, the chief first
  (tensorflow/python/distribute/multi_worker_util.py, id_in_cluster): it
  names the replica's shard of the input, and index 0 is the chief, the one
  whose files are kept.
  """
  count: int = 1
  index: int = 0

  @property
  def is_chief(self) -> bool:
    return self.index == 0

  @property
  def several(self) -> bool:
    return self.count > 1


ALONE = Replica()


def replica(environ: Optional[Mapping[str, str]] = None) -> Replica:
  """This process's replica, from TF_CONFIG; ALONE without one."""
  text = (os.environ if environ is None else environ).get(TF_CONFIG)
  if not text:
    return ALONE
  config = json.loads(text)
  cluster = config.get('cluster') or {}
  chiefs = list(cluster.get(_CHIEF, []))
  workers = list(cluster.get(WORKER, []))
  if not chiefs and not workers:
    return ALONE
  task = config.get('task') or {}
  index = int(task.get('index', 0))
  if task.get('type') == WORKER:
    index += len(chiefs)
  elif task.get('type') != _CHIEF:
    raise ValueError(f'{TF_CONFIG}: task type {task.get("type")!r} is not a '
                     f'training replica ({_CHIEF} or {WORKER})')
  return Replica(len(chiefs) + len(workers), index)


def tf_config(addresses: Sequence[str], index: int) -> str:
  """TF_CONFIG of replica `index` among workers at `addresses` (host:port),
  worker 0 being the chief, as TensorFlow takes the first worker to be when
  the cluster names no chief."""
  return json.dumps({'cluster': {WORKER: list(addresses)},
                     'task': {'type': WORKER, 'index': index}})
