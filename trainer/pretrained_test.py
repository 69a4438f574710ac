"""A weights file given instead of a download: what Keras' HDF5 loader would
refuse is found before any network is built, with what is wrong with it."""
import h5py
import pytest
import tensorflow as tf

from imgcls.trainer import pretrained


def _network(units=(4, 3), name='net', numbers=None):
  inputs = tf.keras.Input(shape=(2,))
  x = inputs
  for i, count in zip(numbers or range(len(units)), units):
    x = tf.keras.layers.Dense(count, name=f'{name}_dense{i}')(x)
  return tf.keras.Model(inputs, x)


@pytest.fixture(scope='module')
def network():
  return _network()


def _expected(network):
  return lambda: pretrained.layers_with_weights(network)


def _never():
  raise AssertionError('a network is built only for a file of Keras weights')


def test_the_layers_with_weights_are_what_keras_loads_in_its_order(network):
  assert pretrained.layers_with_weights(network) == [
      ('net_dense0', ((2, 4), (4,))), ('net_dense1', ((4, 3), (3,)))]


def test_weights_that_keras_saved_pass_and_load(network, tmp_path):
  path = str(tmp_path / 'w.h5')
  network.save_weights(path)
  assert pretrained.file_problem(path, _expected(network)) is None
  network.load_weights(path)


def test_a_whole_saved_model_passes_by_its_model_weights(network, tmp_path):
  path = str(tmp_path / 'model.h5')
  network.save(path, save_format='h5')
  assert pretrained.file_problem(path, _expected(network)) is None


@pytest.mark.parametrize('make, problem', [
    (lambda p: None, 'no such file'),
    (lambda p: p.mkdir(), 'a directory, not a weights file'),
    (lambda p: p.write_bytes(b''), 'an empty file'),
    (lambda p: p.write_text('<html>404 Not Found</html>'),
     "not an HDF5 file (Keras' .h5 weights, as save_weights writes them)"),
], ids=['missing', 'directory', 'empty', 'not HDF5'])
def test_what_is_not_a_weights_file_is_named_without_building(
    tmp_path, make, problem):
  path = tmp_path / 'weights.h5'
  make(path)
  assert pretrained.file_problem(str(path), _never) == problem


def test_an_hdf5_file_without_keras_weights(tmp_path):
  path = str(tmp_path / 'data.h5')
  with h5py.File(path, 'w') as f:
    f['values'] = [1, 2, 3]
  assert pretrained.file_problem(path, _never) == (
      'an HDF5 file without Keras weights (no layer_names attribute)')


def test_a_truncated_file_is_not_readable(network, tmp_path):
  path = tmp_path / 'w.h5'
  network.save_weights(str(path))
  path.write_bytes(path.read_bytes()[:1024])
  assert pretrained.file_problem(str(path), _expected(network)).startswith(
      'not a readable HDF5 weights file')


def test_another_networks_weights_name_the_layers_that_differ(network,
                                                             tmp_path):
  path = str(tmp_path / 'other.h5')
  _network(units=(4, 3, 2), name='other').save_weights(path)
  assert pretrained.file_problem(path, _expected(network)) == (
      "its layers are not the network's: missing net_dense0, net_dense1; "
      'not in the network other_dense0, other_dense1, other_dense2')


def test_layers_of_other_shapes_are_named(network, tmp_path):
  path = str(tmp_path / 'wider.h5')
  _network(units=(5, 3)).save_weights(path)
  assert pretrained.file_problem(path, _expected(network)) == (
      'layer net_dense0 holds weights of shapes [(2, 5), (5,)], the '
      "network's are [(2, 4), (4,)]")


def test_the_same_layers_in_another_order_are_refused(network, tmp_path):
  path = str(tmp_path / 'swapped.h5')
  _network(units=(4, 3), numbers=(1, 0)).save_weights(path)
  assert pretrained.file_problem(path, _expected(network)) == (
      "its layers are the network's, in another order")
