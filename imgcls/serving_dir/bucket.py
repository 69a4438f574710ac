"""A serving directory in a bucket (gs://), where a directory rename is a copy.

On disk a version is written under a hidden name and renamed into place
(serving_dir.versions). In Cloud Storage a directory "rename" copies and
deletes object by object, so TF Serving, whose default policy loads any
all-digit child the moment it is listed, could load half a version. Only a
single-object write is atomic there. So in a bucket:

1. the version is written under its number, `<base>/<N>/`, complete;
2. `names.PUBLISHED_MARKER` is written into it: from then on the project's
   commands (versions, rollback, predict, the baseline) count it;
3. the serving directory's `names.MODEL_CONFIG_FILE`, a ModelServerConfig
   whose entry for the model names N under the `specific` policy, is
   rewritten whole, one object.

TF Serving, started with `--model_config_file` on that file and
`--model_config_file_poll_wait_seconds`, re-reads it and loads only the
versions it names (tensorflow/serving:tensorflow_serving/sources/
storage_path/file_system_storage_path_source.cc, AspireSpecificVersions
passes over every other child; model_servers/server.cc,
PollFilesystemAndReloadConfig). A version it is told to load was complete
before the file named it. A writer that dies leaves an unmarked, unnamed
version, which no reader takes and the next publish steps over.

Pruning unmarks a version before deleting it. One writer per model at a time:
the bucket has no lock that the next writer could test, as the disk has.
"""
import os
from typing import Dict, Optional

from google.protobuf import text_format

from imgcls.contract import names, storage
from imgcls.contract.files import replace_file


def is_bucket(base_dir: str) -> bool:
  return storage.is_remote(base_dir)


def numbered_dirs(base_dir: str) -> Dict[int, str]:
  """{version: path} of every all-digit child, complete or not."""
  try:
    children = storage.listdir(base_dir)
  except FileNotFoundError:
    return {}
  return {int(name): os.path.join(base_dir, name) for name in children
          if name.isascii() and name.isdigit()}


def is_published(version_dir: str) -> bool:
  return storage.exists(os.path.join(version_dir, names.PUBLISHED_MARKER))


def mark_published(version_dir: str) -> None:
  storage.write_bytes(os.path.join(version_dir, names.PUBLISHED_MARKER), b'')


def unpublish(version_dir: str) -> None:
  """Unmarks, then deletes, a version that no model config names."""
  storage.rmtree(os.path.join(version_dir, names.PUBLISHED_MARKER))
  storage.rmtree(version_dir)


def model_config_path(base_dir: str) -> str:
  return os.path.join(os.path.dirname(base_dir), names.MODEL_CONFIG_FILE)


def serve(base_dir: str, version: int) -> None:
  """Rewrites the model config so that TF Serving serves `version` of the
  model at base_dir; the other models' entries stay as they are."""
  config = _read_config(model_config_path(base_dir))
  name = os.path.basename(base_dir)
  models = config.model_config_list.config
  entry = next((m for m in models if m.name == name), None) or models.add()
  entry.name = name
  entry.base_path = base_dir
  entry.model_platform = 'tensorflow'
  entry.model_version_policy.specific.ClearField('versions')
  entry.model_version_policy.specific.versions.append(version)
  replace_file(model_config_path(base_dir),
               text_format.MessageToString(config))


def served_version(base_dir: str) -> Optional[int]:
  """The version the model config names for the model at base_dir."""
  config = _read_config(model_config_path(base_dir))
  for model in config.model_config_list.config:
    if model.name == os.path.basename(base_dir):
      versions = model.model_version_policy.specific.versions
      return max(versions) if versions else None
  return None


def _read_config(path: str):
  from tensorflow_serving.config import model_server_config_pb2
  config = model_server_config_pb2.ModelServerConfig()
  if storage.exists(path):
    text_format.Parse(storage.read_bytes(path).decode('utf-8'), config)
  return config
