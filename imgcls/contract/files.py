"""Writing a small file so that a reader never sees half of it."""
import json
import os
from typing import Any


def write_json_atomically(path: str, value: Any) -> None:
  """Writes beside `path` and renames over it: a crash leaves the old file
  or the new one, never a truncated one (the retrain state, provenance)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
