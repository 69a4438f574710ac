"""From the pipeline's push to answers over REST and gRPC.

The pipeline pushes a version; the local TF-Serving-compatible server picks
it up; `evaluate-serving` sends the test images over both protocols and both
image signatures and compares them with the SavedModel called in-process.
"""
import os

import pytest

from imgcls import cli
from imgcls.dev_server.server import ModelServer, ServerConfig
from imgcls.pipeline import local
from imgcls.pipeline.config import PipelineConfig
from imgcls.trainer.config import TrainingConfig
from tests import images

pytestmark = pytest.mark.e2e


def test_pushed_version_is_served_and_agrees_with_in_process(
    tmp_path, capsys):
  images.write_class_folders(str(tmp_path / 'data' / 'train'),
                             {'a': 30, 'b': 30, 'c': 30})
  images.write_class_folders(str(tmp_path / 'data' / 'test'),
                             {'a': 6, 'b': 6, 'c': 6}, seed=1)
  result = local.run(PipelineConfig(
      data_root=str(tmp_path / 'data'), serving_dir=str(tmp_path / 'serving'),
      pipeline_root=str(tmp_path / 'pipeline'),
      training=TrainingConfig(epochs=1, batch_size=16), min_accuracy=0.0))
  assert result.pushed_version == '1'
  base_path = str(tmp_path / 'serving' / 'LenetModel')
  with ModelServer(ServerConfig(base_path, 'LenetModel', rest_port=0,
                                grpc_port=0, poll_seconds=0.2)) as server:
    for signature in ('serving_bytes', 'serving_default'):
      status = cli.main([
          'evaluate-serving', '--test-dir', str(tmp_path / 'data' / 'test'),
          '--host', '127.0.0.1', '--model-name', 'LenetModel',
          '--rest-port', str(server.rest_port), '--grpc-port',
          str(server.grpc_port), '--protocol', 'both', '--signature',
          signature, '--model-path', os.path.join(base_path, '1')
      ])
      out = capsys.readouterr().out
      assert status == 0, out
      assert 'version 1' in out
