"""The deployment's shared names, read from kubernetes/params/params.env.

That file is the one source for every name that the Kubernetes manifests and
the Python defaults share: the served model's name, the images, the PVCs and
where pods mount them, the GPU node label. kustomize copies its values into
the manifests (kubernetes/params/kustomization.yaml); this module gives the
same values to Python, e.g. to pipeline.kubeflow_config's defaults.

Where the file is: $IMGCLS_PARAMS_FILE if set (the Dockerfile sets it to the
copy inside the image), else the source tree's kubernetes/params/params.env,
else the copy an installed package carries as package data (setup.py).

Pure Python and read once, on first use: `imgcls --help` stays instant.
"""
import functools
import os
import pathlib
from typing import Dict, Optional, Tuple

from imgcls.contract.errors import UserError

PARAMS_FILE_ENV = 'IMGCLS_PARAMS_FILE'
SOURCE_TREE_PARAMS = (pathlib.Path(__file__).resolve().parents[2] /
                      'kubernetes' / 'params' / 'params.env')
# The copy an installed package carries (package data of imgcls.params).
INSTALLED_PARAMS = (pathlib.Path(__file__).resolve().parents[1] / 'params' /
                    'params.env')


def params_file() -> pathlib.Path:
  if os.environ.get(PARAMS_FILE_ENV):
    return pathlib.Path(os.environ[PARAMS_FILE_ENV])
  if SOURCE_TREE_PARAMS.exists() or not INSTALLED_PARAMS.exists():
    return SOURCE_TREE_PARAMS
  return INSTALLED_PARAMS


def parse_env_file(text: str) -> Dict[str, str]:
  """KEY=VALUE lines as kustomize's configMapGenerator `envs` reads them
  (kustomize api/kv/kv.go, keyValuesFromLine): leading whitespace dropped,
  blank lines and lines starting with # skipped, split at the first '=', the
  value kept as written (no quotes removed, no trailing space trimmed), a
  line without '=' an empty value."""
  values = {}
  for number, line in enumerate(text.splitlines(), 1):
    line = line.lstrip()
    if number == 1:
      line = line.lstrip('\ufeff')
    if not line or line.startswith('#'):
      continue
    key, _, value = line.partition('=')
    if not key.isidentifier():
      raise ValueError(f'line {number}: {key!r} is not an env variable name')
    values[key] = value
  return values


@functools.lru_cache(maxsize=None)
def params(path: Optional[str] = None) -> Dict[str, str]:
  """Every KEY=VALUE of the params file (of `path`, if given)."""
  file = pathlib.Path(path) if path else params_file()
  try:
    return parse_env_file(file.read_text(encoding='utf-8'))
  except FileNotFoundError:
    raise UserError(
        f'{file} not found: the deployment\'s names (kubernetes/params/'
        f'params.env) are read from there; set {PARAMS_FILE_ENV} to the '
        'file\'s path') from None


def get(key: str) -> str:
  try:
    return params()[key]
  except KeyError:
    raise UserError(f'{params_file()} has no {key}') from None


def model_name() -> str:
  """The name TF Serving serves, and the Pusher's directory under the
  serving dir: the model class's name."""
  return get('MODEL_NAME')


def imgcls_image() -> str:
  """The project's image, for the retrain CronJob and every pipeline step."""
  return get('IMGCLS_IMAGE')


def serving_image(gpu: bool = False) -> str:
  return get('SERVING_GPU_IMAGE' if gpu else 'SERVING_IMAGE')


def serving_pods_service() -> str:
  """TF Serving's headless Service: its name resolves to every ready pod."""
  return get('SERVING_PODS_SERVICE')


def data_pvc() -> str:
  return get('DATA_PVC')


def serving_pvc() -> str:
  return get('SERVING_PVC')


def data_mount() -> str:
  """Where every pod mounts the data PVC."""
  return get('DATA_MOUNT')


def serving_mount() -> str:
  """Where every pod mounts the serving PVC (TF Serving included)."""
  return get('SERVING_MOUNT')


def gpu_node_selector() -> Tuple[str, str]:
  """(label, value) of the GPU nodes."""
  return get('GPU_NODE_LABEL'), get('GPU_NODE_LABEL_VALUE')


def trainer_gpus() -> int:
  """GPUs of the pipeline's Trainer on Kubeflow (0: CPU)."""
  value = get('TRAINER_GPUS')
  try:
    return int(value)
  except ValueError:
    raise UserError(f'{params_file()}: TRAINER_GPUS={value} is not a whole '
                    'number') from None


def trainer_cpu() -> str:
  """The Trainer's CPU request and limit, a Kubernetes quantity."""
  return get('TRAINER_CPU')


def trainer_memory() -> str:
  return get('TRAINER_MEMORY')


def image_pull_secret() -> str:
  """The Secret that pulls the images, '' for none."""
  return get('IMAGE_PULL_SECRET')
