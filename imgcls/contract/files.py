"""Writing a small file so that a reader never sees half of it."""
import json
import os
from typing import Any, Union

from imgcls.contract import storage


def replace_file(path: str, data: Union[str, bytes]) -> None:
  """Writes beside `path` and renames over it: a crash leaves the old file
  or the new one, never a truncated one. The one atomic writer (the retrain
  state, provenance, the kept schema, the Trainer's backup records)."""
  tmp = f'{path}.tmp-{os.getpid()}'
  mode = 'wb' if isinstance(data, bytes) else 'w'
  if storage.is_remote(path):  # through TensorFlow's file layer
    import tensorflow as tf  # stays light
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(tmp, mode) as f:
      f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(tmp, mode) as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_json_atomically(path: str, value: Any) -> None:
  replace_file(path, json.dumps(value, indent=1))
