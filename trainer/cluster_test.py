"""TF_CONFIG read and written as TensorFlow reads it."""
import json

import pytest

from imgcls.trainer import cluster


def _env(config) -> dict:
  return {cluster.TF_CONFIG: json.dumps(config)}


def test_without_tf_config_a_process_trains_alone():
  assert cluster.replica({}) == cluster.ALONE
  assert not cluster.ALONE.several and cluster.ALONE.is_chief
  # TFX's rule too: no cluster, the process is the chief
  # (tfx/components/trainer/executor.py, _is_chief).
  assert cluster.replica(_env({'task': {'type': 'worker'}})) == cluster.ALONE


@pytest.mark.parametrize('index', [0, 1, 2])
def test_written_config_reads_back_as_that_replica(index):
  addresses = ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3']
  found = cluster.replica({cluster.TF_CONFIG: cluster.tf_config(addresses,
                                                                 index)})
  assert found == cluster.Replica(3, index)
  assert found.is_chief == (index == 0)  # worker 0 is TensorFlow's chief


def test_a_chief_task_counts_first_and_workers_after_it():
  """TensorFlow's id in the cluster (multi_worker_util.id_in_cluster)."""
  spec = {'chief': ['c:1'], 'worker': ['w:1', 'w:2']}
  assert cluster.replica(_env({'cluster': spec, 'task': {
      'type': 'chief', 'index': 0}})) == cluster.Replica(3, 0)
  worker = cluster.replica(_env({'cluster': spec, 'task': {
      'type': 'worker', 'index': 0}}))
  assert worker == cluster.Replica(3, 1) and not worker.is_chief


def test_a_task_that_does_not_train_is_refused_by_name():
  spec = {'worker': ['w:1'], 'ps': ['p:1']}
  with pytest.raises(ValueError, match="task type 'ps'"):
    cluster.replica(_env({'cluster': spec, 'task': {'type': 'ps',
                                                    'index': 0}}))
