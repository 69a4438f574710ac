"""The model classes: signatures, inputs of every kind, save/load, lookup,
and every registered class trained, saved and served."""
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from imgcls.contract import names, saved_model
from imgcls.contract.errors import UserError
from imgcls.imagedata import preprocessing, tf_examples
from imgcls.trainer import dataset, models, training
from imgcls.trainer.config import TrainingConfig
from tests import images

CLASSES = ['zero', 'one', 'two']

# Options that keep a registered class small and offline here; a class that
# takes longer than a few seconds to build, train and save is slow.
_TEST_OPTIONS = {'ResnetModel': {'weights': None}}
_SLOW = {'ResnetModel'}


def _registered_types():
  return [pytest.param(name, marks=[pytest.mark.slow] * (name in _SLOW))
          for name in sorted(models.registered())]


@pytest.mark.parametrize('model_type', _registered_types())
def test_every_registered_class_trains_saves_and_serves(model_type, tmp_path):
  """Registering a class adds it here: built as the Trainer builds it, one
  step per stage, saved, then served through each signature."""
  shape = models.model_class(model_type).fit_input_shape((8, 8, 1),
                                                         given=False)
  config = TrainingConfig(model_type=model_type, input_shape=shape,
                          epochs=1, batch_size=len(CLASSES),
                          model_options=_TEST_OPTIONS.get(model_type, {}))
  model = training.build_model(config, CLASSES)
  pixels = np.stack([images.digit_like(i, size=shape[:2])
                     for i in range(len(CLASSES))])
  data = tf.data.Dataset.from_tensor_slices(
      (pixels[..., None].astype(np.float32), np.arange(len(CLASSES)))
  ).batch(len(CLASSES))
  history = training.fit(
      model, config, dataset.Inputs(data, data, len(CLASSES), [1, 1, 1]),
      training.Backup(str(tmp_path / 'backup')))
  assert len(history['loss']) == len(model.training_stages())

  model.save(str(tmp_path / '1'))
  served = saved_model.SavedClassifier(str(tmp_path / '1'))
  assert served.class_names == CLASSES
  assert served.pixel_shape == shape
  encoded = [images.encode(p) for p in pixels]
  by_bytes = served.predict_bytes(encoded)
  by_examples = served.predict_examples([
      tf_examples.make_example(e, i, name, f'{i}.png').SerializeToString()
      for i, (e, name) in enumerate(zip(encoded, CLASSES))])
  by_pixels = served.predict_pixels(pixels[..., None])
  for outputs in (by_examples, by_pixels):
    np.testing.assert_allclose(outputs['logits'], by_bytes['logits'],
                               atol=1e-3)
  assert [n.decode() for n in by_bytes['class_name']] == [
      CLASSES[i] for i in by_bytes['class_id']]


@pytest.fixture(scope='module')
def lenet():
  return models.build_model('LenetModel', (28, 28, 1), CLASSES)


@pytest.fixture(scope='module')
def saved(lenet, tmp_path_factory):
  path = str(tmp_path_factory.mktemp('lenet') / '1')
  lenet.save(path)
  return saved_model.SavedClassifier(path)


def test_signatures_have_names_dtypes_and_shapes(saved):
  expected_inputs = {
      'serving_default': ('input_tensor', tf.float32, [None, 28, 28, 1]),
      'serving_bytes': ('image_bytes_string', tf.string, [None]),
      'serving_examples': ('examples', tf.string, [None]),
  }
  assert set(saved.signatures) == set(expected_inputs)
  for name, (input_name, dtype, shape) in expected_inputs.items():
    signature = saved.signatures[name]
    spec = signature.structured_input_signature[1][input_name]
    assert spec.dtype == dtype and spec.shape.as_list() == shape
    outputs = signature.structured_outputs
    assert set(outputs) == set(names.OUTPUT_KEYS)
    assert outputs['logits'].dtype == tf.float32
    assert outputs['logits'].shape.as_list() == [None, len(CLASSES)]
    assert outputs['probabilities'].shape.as_list() == [None, len(CLASSES)]
    assert outputs['class_id'].dtype == tf.int64
    assert outputs['class_name'].dtype == tf.string


def test_number_of_classes_follows_class_names():
  model = models.build_model('LenetModel', (28, 28, 1), list('abcde'))
  assert model.output_shape == (None, 5)


@pytest.mark.parametrize('fmt', images.FORMATS)
def test_every_format_decodes_to_same_answer_as_pixels(saved, fmt):
  pixels = images.digit_like(1)
  encoded = images.encode(pixels, fmt)
  if fmt == 'JPEG':  # lossy: the file holds other pixels than were encoded
    pixels = preprocessing.client_rgb(encoded)[..., 0]
  out = saved.predict_bytes([encoded])
  reference = saved.predict_pixels(pixels[np.newaxis, :, :, np.newaxis])
  assert out['class_name'].tolist() == reference['class_name'].tolist()
  np.testing.assert_allclose(out['logits'], reference['logits'], atol=1e-3)


def test_gif_uses_its_first_frame(saved):
  first, second = images.digit_like(0), images.digit_like(2)
  out = saved.predict_bytes([images.animated_gif([first, second])])
  expected = saved.predict_bytes([images.encode(first, 'GIF')])
  np.testing.assert_allclose(out['logits'], expected['logits'], atol=1e-4)


def test_one_request_carries_images_of_mixed_sizes(saved):
  encoded = [
      images.encode(images.digit_like(0, size=(28, 28))),
      images.encode(images.digit_like(1, size=(56, 40))),
      images.encode(np.stack([images.digit_like(2, size=(17, 9))] * 3, -1)),
  ]
  out = saved.predict_bytes(encoded)
  assert out['logits'].shape == (3, len(CLASSES))
  assert out['class_name'].shape == (3,)
  np.testing.assert_allclose(out['probabilities'].sum(axis=1), 1, rtol=1e-5)


def test_client_pixels_of_gray_and_colour_images_agree(saved):
  gray = images.digit_like(2)
  rgb = np.stack([gray] * 3, -1)
  pixels = [preprocessing.client_pixels([images.encode(p)], saved.pixel_shape)
            for p in (gray, rgb)]
  np.testing.assert_allclose(saved.predict_pixels(pixels[0])['logits'],
                             saved.predict_pixels(pixels[1])['logits'],
                             atol=1e-3)


def test_client_pixels_of_any_size_match_serving_bytes(saved):
  encoded = [images.encode(images.digit_like(1, size=(100, 60)))]
  pixels = preprocessing.client_pixels(encoded, saved.pixel_shape)
  assert pixels.shape == (1, 28, 28, 1)
  np.testing.assert_allclose(saved.predict_pixels(pixels)['logits'],
                             saved.predict_bytes(encoded)['logits'], atol=1e-3)


def test_served_pixels_must_have_the_models_shape(saved):
  """A free height or width would let TF Serving's batching fail a batch of
  requests that each succeed alone (batching_session.cc)."""
  with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
    saved.predict_pixels(np.zeros((1, 100, 60, 1), np.float32))


def test_in_process_predictor_takes_any_size_and_channels(lenet):
  out = lenet.predict_numpy_image(np.zeros((2, 100, 60, 3), np.float32))
  assert out['logits'].shape == (2, len(CLASSES))
  with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
    lenet.predict_numpy_image(np.zeros((1, 28, 28, 2), np.float32))


def test_three_channel_model_takes_grayscale_bytes(tmp_path):
  model = models.build_model('LenetModel', (32, 32, 3), CLASSES)
  model.save(str(tmp_path))
  loaded = saved_model.SavedClassifier(str(tmp_path))
  out = loaded.predict_bytes([images.encode(images.digit_like(0))])
  assert out['logits'].shape == (1, len(CLASSES))


def test_save_load_round_trip_gives_equal_predictions(lenet, saved):
  pixels = np.stack([images.digit_like(i) for i in range(3)])[..., None]
  keras_logits = lenet.predict(pixels.astype(np.float32), verbose=0)
  np.testing.assert_allclose(
      saved.predict_pixels(pixels)['logits'], keras_logits, atol=1e-5)
  assert saved.class_names == CLASSES
  class_ids = saved.predict_pixels(pixels)['class_id']
  assert [n.decode() for n in saved.predict_pixels(pixels)['class_name']
         ] == [CLASSES[i] for i in class_ids]


def test_model_checkpoint_output_is_servable(tmp_path):
  model = models.build_model('LenetModel', (28, 28, 1), CLASSES)
  model.compile('adam', tf.keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  x = np.stack([images.digit_like(i % 3, seed=i) for i in range(12)])[..., None]
  y = np.arange(12) % 3
  checkpoint_dir = str(tmp_path / 'checkpoint')
  model.fit(x.astype(np.float32), y, epochs=1, verbose=0,
            callbacks=[tf.keras.callbacks.ModelCheckpoint(checkpoint_dir)])
  loaded = saved_model.SavedClassifier(checkpoint_dir)
  assert set(loaded.signatures) == {
      'serving_default', 'serving_bytes', 'serving_examples'}
  assert loaded.predict_bytes([images.encode(x[0, ..., 0])])[
      'class_name'].shape == (1,)


def test_examples_signature_reads_what_the_example_gen_writes(saved):
  encoded = images.encode(images.digit_like(2))
  example = tf_examples.make_example(encoded, 2, 'two', 'two/a.png')
  by_example = saved.predict_examples([example.SerializeToString()])
  by_bytes = saved.predict_bytes([encoded])
  np.testing.assert_allclose(by_example['logits'], by_bytes['logits'])


def test_user_subclass_is_found_by_dotted_path(tmp_path, monkeypatch):
  package = tmp_path / 'my_models'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'tiny.py').write_text(textwrap.dedent('''
      import tensorflow as tf
      from imgcls.trainer.models import ImageClassifierModel

      class TinyModel(ImageClassifierModel):
        def create_model_io(self, input_shape, num_classes):
          inputs = tf.keras.Input(shape=input_shape)
          x = tf.keras.layers.Flatten()(inputs)
          return inputs, tf.keras.layers.Dense(num_classes)(x)
  '''))
  monkeypatch.syspath_prepend(str(tmp_path))
  model = models.build_model('my_models.tiny.TinyModel', (8, 8, 1), CLASSES)
  assert type(model).__name__ == 'TinyModel'
  # Importing a class registers nothing: its name alone still means nothing.
  with pytest.raises(UserError, match='unknown model type'):
    models.model_class('TinyModel')
  model.save(str(tmp_path / 'saved'))
  assert saved_model.SavedClassifier(str(tmp_path / 'saved')).class_names == (
      CLASSES)


class _Registered(models.LenetModel):
  pass


@pytest.fixture
def registry(monkeypatch):
  """The registry as shipped, restored after the test."""
  monkeypatch.setattr(models, '_REGISTRY', models.registered())


def test_a_registered_class_is_found_by_its_name(registry):
  assert models.register(_Registered) is _Registered
  assert models.model_class('_Registered') is _Registered
  models.register(_Registered)  # the same class again: no conflict


def test_a_name_held_by_another_class_is_refused(registry):
  taken = type('LenetModel', (models.ImageClassifierModel,), {})
  with pytest.raises(UserError, match="'LenetModel' is imgcls.trainer.models"
                     '.LenetModel; .* dotted path'):
    models.register(taken)
  assert models.model_class('LenetModel') is models.LenetModel


def test_only_model_classes_register(registry):
  with pytest.raises(UserError, match='not a subclass'):
    models.register(dict)


@pytest.mark.parametrize('model_type,message', [
    ('NoSuchModel', 'unknown model type'),
    ('no_such_module.Model', 'cannot import'),
    ('os.NoSuchClass', 'no class'),
    ('tests.images.FORMATS', 'not a subclass'),
])
def test_bad_model_types_are_named(model_type, message):
  with pytest.raises(UserError, match=message):
    models.model_class(model_type)


def test_bad_constructor_arguments_are_named():
  with pytest.raises(UserError, match='channels'):
    models.build_model('LenetModel', (28, 28, 2), CLASSES)
  with pytest.raises(UserError, match='distinct'):
    models.build_model('LenetModel', (28, 28, 1), ['a', 'a'])


@pytest.mark.slow
def test_resnet_fine_tunes_head_then_top_blocks(tmp_path):
  # A local weights file, for clusters without internet.
  weights = str(tmp_path / 'backbone.h5')
  tf.keras.applications.ResNet50V2(
      include_top=False, weights=None, input_shape=(32, 32, 3),
      pooling='avg').save_weights(weights)
  model = models.build_model('ResnetModel', (32, 32, 1), CLASSES,
                             weights=weights)
  backbone = model.get_layer('resnet50v2')
  head, top_blocks = model.training_stages()
  assert (head.name, head.learning_rate_scale) == ('head', 1.0)
  assert (top_blocks.name, top_blocks.learning_rate_scale) == (
      'top_blocks', 0.1)
  head.enter(model)
  assert not backbone.trainable
  assert model.get_layer('logits').trainable
  top_blocks.enter(model)
  trainable = {layer.name for layer in backbone.layers if layer.trainable}
  assert trainable and all(n.startswith('conv5_') for n in trainable)
  assert not any('_bn' in n for n in trainable)


def test_resnet_rejects_too_small_input():
  with pytest.raises(UserError, match='at least 32x32'):
    models.build_model('ResnetModel', (28, 28, 1), CLASSES, weights=None)
