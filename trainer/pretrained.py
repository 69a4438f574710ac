"""Pretrained weights: those Keras would download, found in its cache or
fetched once when the command starts, within a deadline, never on a hang;
and a weights file given instead, checked when the command starts.

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
from typing import Callable, List, Optional, Sequence, Tuple
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


# (layer name, the shapes of its weights): a layer of a network as Keras'
# HDF5 weights loader matches it.
LayerWeights = Tuple[str, Tuple[Tuple[int, ...], ...]]
# Layer names shown of a longer list that differs.
_NAMES_SHOWN = 5


def layers_with_weights(model) -> List[LayerWeights]:
  """The layers that Keras loads weights into, in its order
  (tf_keras/src/saving/legacy/hdf5_format.py, load_weights_from_hdf5_group:
  the layers without weights are passed over)."""
  return [(layer.name, tuple(tuple(w.shape) for w in layer.weights))
          for layer in model.layers if layer.weights]


def file_problem(path: str, expected: Callable[[], Sequence[LayerWeights]]
                ) -> Optional[str]:
  """What stops Keras' load_weights from reading `path` into a network whose
  layers with weights `expected()` gives, or None when nothing does.

  Keras would read the file only when the network is built, after the data
  has been read, and its errors never name the file. `expected` is called
  only for a file of Keras weights: building a network takes seconds.
  """
  if not os.path.lexists(path):
    return 'no such file'
  if os.path.isdir(path):
    return 'a directory, not a weights file'
  try:
    with open(path, 'rb') as f:
      if not f.read(1):
        return 'an empty file'
  except OSError as e:
    return f'cannot read it: {e.strerror}'
  import h5py  # only for a file given
  if not h5py.is_hdf5(path):
    return ('not an HDF5 file (Keras\' .h5 weights, as save_weights writes '
            'them)')
  try:
    with h5py.File(path, 'r') as f:
      return _layers_problem(f, expected)
  except (OSError, KeyError, ValueError) as e:
    return f'not a readable HDF5 weights file ({e})'


def _layers_problem(f, expected: Callable[[], Sequence[LayerWeights]]
                   ) -> Optional[str]:
  """The HDF5 layout of tf_keras/src/saving/legacy/hdf5_format.py
  (save_weights_to_hdf5_group): the root's, or a whole saved model's
  model_weights group's, `layer_names` attribute, and for each layer a
  group whose `weight_names` attribute names its datasets."""
  if 'layer_names' not in f.attrs and 'model_weights' in f:
    f = f['model_weights']  # as tf_keras' legacy load_weights does
  if 'layer_names' not in f.attrs:
    return 'an HDF5 file without Keras weights (no layer_names attribute)'
  found = []
  for name in map(_text, f.attrs['layer_names']):
    weight_names = [_text(n) for n in f[name].attrs.get('weight_names', [])]
    if weight_names:
      found.append((name, tuple(f[name][w].shape for w in weight_names)))
  return _mismatch(found, list(expected()))


def _mismatch(found: List[LayerWeights], expected: List[LayerWeights]
             ) -> Optional[str]:
  found_names = [name for name, _ in found]
  expected_names = [name for name, _ in expected]
  missing = [n for n in expected_names if n not in found_names]
  unexpected = [n for n in found_names if n not in expected_names]
  if missing or unexpected:
    return ('its layers are not the network\'s: ' + '; '.join(
        f'{what} {_some(names)}' for what, names in (
            ('missing', missing), ('not in the network', unexpected))
        if names))
  if found_names != expected_names:
    return 'its layers are the network\'s, in another order'
  for (name, shapes), (_, wanted) in zip(found, expected):
    if shapes != wanted:
      return (f'layer {name} holds weights of shapes {list(shapes)}, the '
              f'network\'s are {list(wanted)}')
  return None


def _some(names: List[str]) -> str:
  shown = ', '.join(names[:_NAMES_SHOWN])
  more = len(names) - _NAMES_SHOWN
  return f'{shown} and {more} more' if more > 0 else shown


def _text(value) -> str:
  """h5py gives attribute strings as bytes or str, by how they were saved."""
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


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
