"""Pretrained weights that Keras would download: found in its cache, or
fetched once when the command starts, within a deadline, never on a hang.

Keras' own download (tf_keras/src/utils/data_utils.py's get_file, called by
tf_keras/src/applications/resnet.py's ResNet) has no timeout: in an air-gapped
cluster the Trainer would wait on a connection that never answers. So the
weights are looked up where Keras keeps them, fetched here with a deadline
when missing, and handed to Keras as a local file: Keras never downloads.
"""
import dataclasses
import hashlib
import os
import threading
import urllib.request

from imgcls.contract import progress
from imgcls.contract.errors import UserError

# Enough for a reachable server to answer, short enough that a command that
# cannot fetch stops within seconds of starting.
CONNECT_DEADLINE_S = 4.0
# Seconds without a byte before a started download counts as stalled.
READ_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class WeightsFile:
  """A file as Keras' applications name, place and check it."""
  file_name: str
  url: str
  md5: str
  megabytes: int

  def keras_cache_path(self) -> str:
    """Where get_file keeps it: ~/.keras/models, or /tmp/.keras/models when
    ~/.keras is not writable (data_utils.py's get_file; os.access is False for a
    directory that does not exist yet)."""
    base = os.path.expanduser(os.path.join('~', '.keras'))
    if not os.access(base, os.W_OK):
      base = os.path.join('/tmp', '.keras')
    return os.path.join(base, 'models', self.file_name)


# tf_keras/src/applications/resnet.py: BASE_WEIGHTS_PATH, the second of
# WEIGHTS_HASHES['resnet50v2'], and ResNet's notop file name;
# tests/test_resnet_recipe.py checks these against the installed tf_keras.
RESNET50V2_NOTOP = WeightsFile(
    file_name='resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5',
    url='https://storage.googleapis.com/tensorflow/keras-applications/resnet/'
    'resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5',
    md5='fac2f116257151a9d068a22e544a4917',
    megabytes=94)


def ensure(weights: WeightsFile, ways_out: str,
           deadline_s: float = CONNECT_DEADLINE_S) -> str:
  """The path of the weights in Keras' cache, fetched first if missing.

  Raises UserError, naming `ways_out`, when the server does not answer
  within `deadline_s` (no network, no DNS, a blocked port) or the download
  fails or stalls; nothing half-written is left in the cache.
  """
  path = weights.keras_cache_path()
  if os.path.isfile(path) and _md5(path) == weights.md5:
    return path
  progress.report('downloading %s (%d MB) to %s', weights.url,
                  weights.megabytes, path)
  try:
    response = _open_within(weights.url, deadline_s)
    _save(response, path, weights.md5)
  except (OSError, ValueError) as e:
    raise UserError(f'cannot fetch {weights.url} ({e}); {ways_out}') from None
  return path


def _open_within(url: str, deadline_s: float):
  """urlopen's timeout covers connecting and reading, not name resolution:
  a thread bounds the whole opening, and is left behind if it overruns."""
  result = {}

  def open_url():
    try:
      result['response'] = urllib.request.urlopen(url, timeout=READ_TIMEOUT_S)
    except Exception as e:
      result['error'] = e

  opener = threading.Thread(target=open_url, daemon=True)
  opener.start()
  opener.join(deadline_s)
  if 'response' in result:
    return result['response']
  if 'error' in result:
    raise OSError(str(result['error']))
  raise OSError(f'no answer within {deadline_s:g} s')


def _save(response, path: str, md5: str) -> None:
  """Written beside its place and renamed when whole and checked."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  partial = f'{path}.part-{os.getpid()}'
  digest = hashlib.md5()
  try:
    with response, open(partial, 'wb') as f:
      for chunk in iter(lambda: response.read(1 << 20), b''):
        digest.update(chunk)
        f.write(chunk)
    if digest.hexdigest() != md5:
      raise ValueError(f'the download has md5 {digest.hexdigest()}, not the '
                       f'published {md5}')
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def _md5(path: str) -> str:
  digest = hashlib.md5()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()
