"""The Pusher's executor: atomic, always-increasing integer versions.

TFX's stock Pusher names versions by Unix time and copies in place, so TF
Serving can load a half-copied version. This executor copies into a hidden
temporary directory and renames it to the next integer (see
serving_dir.versions), keeps the newest `keep_versions`, and does not
publish the same trained model twice: a re-run on unchanged data (a cached
Trainer) leaves the serving directory as it is.

Use it through TFX's Pusher: Pusher(..., custom_executor_spec=
executor_spec.ExecutorClassSpec(Executor), custom_config={'keep_versions': 5}).
"""
import json
import logging
import os
import shutil
from typing import Optional

from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import json_utils
from tfx.utils import proto_utils

from contract import names
from serving_dir import versions as model_versions

KEEP_VERSIONS = 'keep_versions'
DEFAULT_KEEP_VERSIONS = 5
# TF Serving ignores assets.extra; it is where extra files of a SavedModel go.
PROVENANCE_FILE = names.PROVENANCE_FILE


def provenance(version_dir: str) -> dict:
  try:
    with open(os.path.join(version_dir, PROVENANCE_FILE)) as f:
      return json.load(f)
  except FileNotFoundError:
    return {}


class Executor(pusher_executor.Executor):

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    pushed = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(pushed)
      return
    model = artifact_utils.get_single_instance(
        input_dict[standard_component_specs.MODEL_KEY])
    base_dir = _base_directory(exec_properties)
    already = _version_of(base_dir, model.uri)
    if already is not None:
      logging.warning('this model is already published as %s/%d; nothing new '
                      'pushed', base_dir, already)
      self._MarkNotPushed(pushed)
      pushed.set_string_custom_property(names.PROP_ALREADY_PUBLISHED, str(already))
      return
    source = self.GetModelPath(input_dict)

    def write(tmp_dir: str) -> None:
      shutil.copytree(source, tmp_dir)
      os.makedirs(os.path.dirname(os.path.join(tmp_dir, PROVENANCE_FILE)),
                  exist_ok=True)
      with open(os.path.join(tmp_dir, PROVENANCE_FILE), 'w') as f:
        json.dump({'model_uri': model.uri, 'model_id': model.id}, f)

    version = model_versions.publish(base_dir, write)
    destination = os.path.join(base_dir, str(version))
    custom_config = json_utils.loads(
        exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or
        'null') or {}
    removed = model_versions.prune(
        base_dir, int(custom_config.get(KEEP_VERSIONS, DEFAULT_KEEP_VERSIONS)))
    logging.info('pushed %s (removed old versions %s)', destination,
                    removed)
    self._MarkPushed(pushed, pushed_destination=destination,
                     pushed_version=str(version))


def _base_directory(exec_properties) -> str:
  destination = pusher_pb2.PushDestination()
  proto_utils.json_to_proto(
      exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
      destination)
  return destination.filesystem.base_directory


def _version_of(base_dir: str, model_uri: str) -> Optional[int]:
  """The published version made from model_uri, if there is one."""
  for version in reversed(model_versions.versions(base_dir)):
    if provenance(os.path.join(base_dir, str(version))).get(
        'model_uri') == model_uri:
      return version
  return None
