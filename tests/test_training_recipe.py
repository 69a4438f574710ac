"""What the model classes declare for training (augmentation, search space)
and the loop's recipe: schedules, label smoothing, class weights, devices,
and an input pipeline that takes its counts from what was recorded."""
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from imgcls.contract import saved_model
from imgcls.imagedata import class_folders, preprocessing
from imgcls.trainer import dataset, models, training
from imgcls.trainer.config import TrainingConfig
from tests import images, training_data

CLASSES = ['zero', 'one', 'two']


class CountingModel(models.ImageClassifierModel):
  """A tiny classifier whose augmentation counts the batches it sees."""

  def create_model_io(self, input_shape, num_classes):
    inputs = tf.keras.Input(shape=input_shape)
    x = tf.keras.layers.Flatten()(tf.keras.layers.Rescaling(1 / 255)(inputs))
    return inputs, tf.keras.layers.Dense(num_classes)(x)

  def augmentation(self):
    return [_CountBatches()]


_COUNTING = f'{__name__}.CountingModel'


class _CountBatches(tf.keras.layers.Layer):

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.batches = tf.Variable(0, trainable=False)

  def call(self, x):
    self.batches.assign_add(1)
    return x


def _pixels(count: int) -> np.ndarray:
  return np.stack([images.digit_like(i % 3, seed=i)
                   for i in range(count)])[..., None].astype(np.float32)


def _inputs(x, y, batch_size=4) -> dataset.Inputs:
  data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
  return dataset.Inputs(data, data, len(y), list(np.bincount(y)))


def test_augmentation_is_active_in_fit_only(tmp_path):
  config = TrainingConfig(model_type=_COUNTING, input_shape=(28, 28, 1),
                          epochs=2, batch_size=4)
  model = training.build_model(config, CLASSES)
  x, y = _pixels(12), np.arange(12) % 3
  training.fit(model, config, _inputs(x, y), training.Backup(str(tmp_path)))
  counter = model._augmenter.layers[0].batches
  assert int(counter.numpy()) == 2 * 3  # two epochs of three batches
  model.evaluate(x, y, verbose=0)
  model.predict(x, verbose=0)
  model.predict_numpy_image(x)
  model.predict_bytes_image([images.encode(images.digit_like(0))])
  assert int(counter.numpy()) == 6


def test_augmentation_off_trains_without_it(tmp_path):
  config = TrainingConfig(model_type=_COUNTING, input_shape=(28, 28, 1),
                          epochs=1, augment='none')
  model = training.build_model(config, CLASSES)
  x, y = _pixels(8), np.arange(8) % 3
  training.fit(model, config, _inputs(x, y), training.Backup(str(tmp_path)))
  assert model._augmenter is None


def test_served_predictions_are_deterministic_with_augmentation_on_or_off(
    tmp_path):
  x, y = _pixels(16), np.arange(16) % 3
  on = TrainingConfig(epochs=1, augment='default')
  augmented = training.build_model(on, CLASSES)
  training.fit(augmented, on, _inputs(x, y), training.Backup(
      str(tmp_path / 'backup')))
  plain = training.build_model(TrainingConfig(augment='none'), CLASSES)
  plain.set_weights(augmented.get_weights())
  encoded = [images.encode(images.digit_like(i, seed=9)) for i in range(3)]
  outputs = []
  for name, model in (('on', augmented), ('off', plain)):
    model.save(str(tmp_path / name))
    served = saved_model.SavedClassifier(str(tmp_path / name))
    pixels = preprocessing.client_pixels(encoded, served.pixel_shape)
    for _ in range(2):
      outputs += [served.predict_bytes(encoded)['logits'],
                  served.predict_pixels(pixels)['logits']]
  for logits in outputs[1:]:
    np.testing.assert_allclose(logits, outputs[0], atol=1e-4)


def test_on_cpus_augmentation_runs_in_the_input_pipeline_on_gpus_in_the_step(
    tmp_path):
  """Issue 26: without a GPU the augmentation moves to tf.data's parallel
  map; with one it stays in train_step. Either way each batch is augmented
  once, in fit alone."""
  config = TrainingConfig(model_type=_COUNTING, input_shape=(28, 28, 1),
                          epochs=1, batch_size=4)
  x, y = _pixels(12), np.arange(12) % 3
  cpu = training.build_model(config, CLASSES, training.devices([]))
  on_gpus = training.Devices(tf.distribute.get_strategy(), 'float32', gpus=1)
  gpu = training.build_model(config, CLASSES, on_gpus)
  assert cpu.input_augmentation() is not None
  assert gpu.input_augmentation() is None
  for name, model in (('cpu', cpu), ('gpu', gpu)):
    training.fit(model, config, _inputs(x, y),
                 training.Backup(str(tmp_path / name)))
    model.predict(x, verbose=0)
    counter = model._augmenter.layers[0].batches
    assert int(counter.numpy()) == 3, name


_RANDOM_OP = re.compile(r'Random|Rng|Multinomial|Shuffle')


def test_served_signatures_hold_no_random_ops(tmp_path):
  """LeNet trained with its augmentation in the input pipeline: the saved
  signatures hold no random op, in their graphs or the functions they call."""
  config = TrainingConfig(epochs=1, batch_size=8)
  model = training.build_model(config, CLASSES)
  assert model.input_augmentation() is not None
  x, y = _pixels(16), np.arange(16) % 3
  training.fit(model, config, _inputs(x, y, batch_size=8),
               training.Backup(str(tmp_path / 'backup')))
  model.save(str(tmp_path / 'model'))
  loaded = tf.saved_model.load(str(tmp_path / 'model'))
  for name, function in loaded.signatures.items():
    graph = function.graph.as_graph_def()
    ops = {node.op for node in graph.node} | {
        node.op for f in graph.library.function for node in f.node_def}
    assert not [op for op in ops if _RANDOM_OP.search(op)], name


def test_lenet_shifts_rotates_and_zooms_but_never_flips():
  kinds = {type(layer) for layer in models.build_model(
      'LenetModel', (28, 28, 1), CLASSES).augmentation()}
  layers = tf.keras.layers
  assert kinds == {layers.RandomTranslation, layers.RandomRotation,
                   layers.RandomZoom}


@pytest.mark.slow
def test_resnet_flips_crops_and_jitters_colour():
  model = models.build_model('ResnetModel', (32, 32, 3), CLASSES,
                             weights=None)
  kinds = {type(layer) for layer in model.augmentation()}
  layers = tf.keras.layers
  assert {layers.RandomFlip, layers.RandomZoom, layers.RandomBrightness,
          layers.RandomContrast} <= kinds


def test_lenet_search_space_reaches_its_layers_and_optimizer():
  space = models.model_class('LenetModel').search_space()
  assert set(space.values) == {'learning_rate', 'conv1_filters',
                               'conv2_filters', 'dropout'}
  values = {'learning_rate': 3e-4, 'conv1_filters': 16, 'conv2_filters': 96,
            'dropout': 0.2}
  config = TrainingConfig().with_hyperparameters(values)
  assert config.learning_rate == 3e-4
  model = training.build_model(config, CLASSES)
  convs = [layer for layer in model.layers
           if isinstance(layer, tf.keras.layers.Conv2D)]
  assert [c.filters for c in convs] == [16, 96]
  (drop,) = [layer for layer in model.layers
             if isinstance(layer, tf.keras.layers.Dropout)]
  assert drop.rate == pytest.approx(0.2)


def test_cosine_schedule_warms_up_then_decays_to_zero_per_stage():
  config = TrainingConfig(lr_schedule='cosine', epochs=10, learning_rate=1e-2,
                          warmup_fraction=0.1)
  schedule = training.learning_rate(config, 0.5, steps_per_epoch=10)
  assert float(schedule(0)) == pytest.approx(0)
  assert float(schedule(10)) == pytest.approx(5e-3)  # the stage's peak
  assert float(schedule(55)) < 5e-3
  assert float(schedule(100)) == pytest.approx(0, abs=1e-9)
  assert training.learning_rate(TrainingConfig(), 0.1, 10) == pytest.approx(
      1e-4)


class TransferModel(models.ImageClassifierModel):
  """A user's transfer-learning class: its head on a frozen 'base' first,
  then the whole network at a tenth of the rate."""

  def create_model_io(self, input_shape, num_classes):
    inputs = tf.keras.Input(shape=input_shape)
    x = tf.keras.layers.Flatten()(inputs)
    x = tf.keras.layers.Dense(4, name='base')(x)
    return inputs, tf.keras.layers.Dense(num_classes, name='head')(x)

  def training_stages(self):
    return [models.Stage('head', 1.0, self._freeze_base),
            models.Stage('all', 0.1)]

  def _freeze_base(self):
    self.get_layer('base').trainable = False


class _StageLog(tf.keras.callbacks.Callback):
  """What each fit trains, and at which rate."""

  def __init__(self):
    super().__init__()
    self.fits = []

  def on_train_begin(self, logs=None):
    self.fits.append((
        sorted({v.name.split('/')[0] for v in self.model.trainable_variables}),
        float(self.model.optimizer.learning_rate)))


def test_each_stage_trains_what_it_leaves_unfrozen_at_its_rate(tmp_path):
  config = TrainingConfig(model_type=f'{__name__}.TransferModel',
                          input_shape=(8, 8, 1), epochs=1, learning_rate=1e-2)
  model = training.build_model(config, CLASSES)
  x, y = _pixels(6)[:, :8, :8], np.arange(6) % 3
  log = _StageLog()
  history = training.fit(model, config, _inputs(x, y),
                         training.Backup(str(tmp_path)), [log])
  assert log.fits == [(['head'], pytest.approx(1e-2)),
                      (['base', 'head'], pytest.approx(1e-3))]
  assert len(history['loss']) == 2


def test_label_smoothing_matches_keras_one_hot_crossentropy():
  logits = tf.constant([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
  labels = tf.constant([0, 2])
  smoothed = training.SmoothedSparseCrossentropy(0.1)(labels, logits)
  expected = tf.keras.losses.CategoricalCrossentropy(
      from_logits=True, label_smoothing=0.1)(tf.one_hot(labels, 3), logits)
  assert float(smoothed) == pytest.approx(float(expected))


def test_class_weights_come_from_the_recorded_counts(tmp_path):
  """The records hold 4 and 4 examples; the dataset facts record 30 and 10.
  The weights follow the record, which no pass over the data could give."""
  uri = str(tmp_path / 'examples')
  info = training_data.write_examples(
      uri, {'train': {'a': 4, 'b': 4}, 'test': {'a': 2, 'b': 2}},
      recorded={'train': {'a': 30, 'b': 10}, 'test': {'a': 2, 'b': 2}})
  config = TrainingConfig(class_weight='balanced')
  args = training_data.fn_args(uri, str(tmp_path / 'out'), {})
  inputs = dataset.examples_inputs(args.train_files, args.eval_files, info,
                                   config, batch_size=4)
  assert inputs.class_counts == [30, 10] and inputs.train_count == 40
  assert training.class_weights(config, inputs.class_counts) == {
      0: pytest.approx(40 / 60), 1: pytest.approx(40 / 20)}
  assert training.class_weights(TrainingConfig(), [30, 10]) is None


def test_class_weights_of_imgcls_train_come_from_the_listing(tmp_path):
  images.write_class_folders(str(tmp_path / 'train'), {'a': 6, 'b': 2})
  images.write_class_folders(str(tmp_path / 'test'), {'a': 1, 'b': 1})
  train, test = class_folders.read_train_test(str(tmp_path / 'train'),
                                              str(tmp_path / 'test'))
  inputs = dataset.files_inputs(train, test, TrainingConfig(), batch_size=4)
  assert inputs.class_counts == [6, 2] and inputs.train_count == 8


def test_cached_pixels_are_uint8_and_exact_at_the_models_size(tmp_path):
  uri = str(tmp_path / 'examples')
  info = training_data.write_examples(
      uri, {'train': {'a': 3, 'b': 3}, 'test': {'a': 1, 'b': 1}})
  files = [os.path.join(uri, 'Split-train', '*')]
  ds = dataset.examples_dataset(files, 6, (28, 28, 1), batch_size=6,
                                shuffle=False, cache_limit_mb=1)
  (x, y), = list(ds)
  assert x.dtype == tf.float32 and sorted(y.numpy()) == [0, 0, 0, 1, 1, 1]
  expected = images.digit_like(0, seed=0).astype(np.float32)
  first_a = x.numpy()[list(y.numpy()).index(0)][..., 0]
  np.testing.assert_array_equal(first_a, expected)
  assert info.examples['train'] == 6


def test_validation_holdout_is_a_stable_part_of_training(tmp_path):
  paths = tf.constant([f'train/a/{n}.png' for n in range(2000)])
  rule = dataset.Holdout(0.1)
  held = rule.keeps(paths, for_validation=True).numpy()
  kept = rule.keeps(paths, for_validation=False).numpy()
  assert (held != kept).all()
  assert 150 < held.sum() < 250
  np.testing.assert_array_equal(held, rule.keeps(paths, True).numpy())


def test_gpus_get_mixed_precision_and_mirrored_strategy_cpus_nothing():
  assert training.precision_policy([]) == 'float32'
  assert training.precision_policy(['/device:GPU:0']) == 'mixed_float16'
  cpu = training.devices([])
  assert cpu.policy == 'float32' and cpu.replicas == 1
  assert not isinstance(cpu.strategy, tf.distribute.MirroredStrategy)


def test_mixed_precision_model_keeps_float32_logits():
  mixed = training.Devices(tf.distribute.get_strategy(), 'mixed_float16')
  model = training.build_model(TrainingConfig(), CLASSES, mixed)
  assert model.get_layer('logits').compute_dtype == 'float16'
  assert model.output.dtype == tf.float32
  # The process-wide policy is left as it was, for the next component.
  assert tf.keras.mixed_precision.global_policy().name == 'float32'


def test_trainer_validates_on_a_held_out_part_of_the_training_records(
    tmp_path):
  uri = str(tmp_path / 'examples')
  info = training_data.write_examples(
      uri, {'train': {'a': 40, 'b': 40}, 'test': {'a': 2, 'b': 2}})
  args = training_data.fn_args(uri, str(tmp_path / 'out'), {})
  inputs = dataset.examples_inputs(
      args.train_files, args.eval_files, info,
      TrainingConfig(validation_fraction=0.3), batch_size=100)
  (_, train_labels), = list(inputs.train)
  (_, validation_labels), = list(inputs.validation)
  # Every training record lands on exactly one side, none from the test split.
  assert len(train_labels) + len(validation_labels) == 80
  assert 10 <= len(validation_labels) <= 40
  assert inputs.train_count == 56
