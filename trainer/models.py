"""Image classifiers as `tf.keras.Model` subclasses that carry their serving
API.

`ImageClassifierModel` holds everything that does not depend on the
architecture: the predictors that TF Serving calls, the label vocabulary, and a
`save` that always writes those predictors as SavedModel signatures. Because
Keras' `ModelCheckpoint` calls `save`, every checkpoint is servable too.

A subclass overrides the hooks its docstring lists. `--model-type` names a
shipped class (`register`) by its class name, or any subclass by its dotted
path `my_pkg.my_module.MyModel`, which is imported first.
"""
import dataclasses
import importlib
import inspect
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from imgcls.contract import names, progress
from imgcls.contract.errors import UserError
from imgcls.imagedata import preprocessing as image_ops
from imgcls.imagedata import tf_examples
from imgcls.trainer import pretrained as pretrained_weights

# The one stage of a network trained whole, from its first epoch.
ALL_STAGE = 'all'


@dataclasses.dataclass(frozen=True)
class Stage:
  """One fit of a training, with its own learning-rate schedule.

  Attributes:
    name: the stage in the console and in the Trainer's backup.
    learning_rate_scale: multiplies the learning rate.
    freeze: called with every layer trainable, before the stage compiles;
      it freezes the layers the stage leaves alone. None trains them all.
  """
  name: str
  learning_rate_scale: float = 1.0
  freeze: Optional[Callable[[], None]] = None

  def enter(self, model: tf.keras.Model) -> None:
    model.trainable = True  # the setter reaches every nested layer
    if self.freeze is not None:
      self.freeze()


class ImageClassifierModel(tf.keras.Model):
  """The base of every classifier.

  A subclass overrides these hooks, and nothing else:

    create_model_io(self, input_shape, num_classes, **options)
        -> (inputs, logits). Required: the architecture. Its keyword
        arguments are the model options (--model-option NAME=VALUE).
    min_input_size: Tuple[int, int] = (1, 1). The smallest (height, width)
        the architecture takes.
    resolve_options(cls, model_options, local) -> dict. A classmethod that
        checks the options when the command starts; by default, that each
        is an argument of create_model_io.
    training_stages(self) -> List[Stage]. The fits of a training, in order;
        by default one, `Stage(ALL_STAGE)`: the whole network.
    augmentation(self) -> List[tf.keras.layers.Layer]. Random layers that
        run in `fit` alone; by default none.
    search_space(cls) -> keras_tuner.HyperParameters. A classmethod: what
        `imgcls run --tune` searches; by default the learning rate.

  Everything else is machinery that training, the Tuner and serving rely on
  (the predictors, `save`, `train_step`, the config). A subclass may call
  `model_option(name)`, but overrides none of it.

  Args:
    input_shape: (height, width, channels) the architecture works at; channels
      is 1 or 3. Served images of other sizes and channel counts are converted.
    class_names: the label vocabulary, in label order. Its length is the
      number of classes, and the served `class_name` output reads from it.
    **model_options: architecture options passed on to `create_model_io`.
  """
  # The smallest (height, width) the architecture takes. Without
  # --input-shape, smaller images are resized up to it (fit_input_shape).
  min_input_size: Tuple[int, int] = (1, 1)

  def __init__(self, input_shape: Sequence[int], class_names: Sequence[str],
               **model_options):
    image_shape = _check_image_shape(input_shape)
    if any(d < m for d, m in zip(image_shape, self.min_input_size)):
      raise UserError(_too_small(type(self), image_shape))
    class_names = [str(name) for name in class_names]
    if len(class_names) < 2 or len(set(class_names)) != len(class_names):
      raise UserError(f'class_names must be at least two distinct names, got '
                      f'{class_names}')
    inputs, outputs = self.create_model_io(image_shape, len(class_names),
                                           **model_options)
    if outputs.dtype != tf.float32:
      # Under mixed precision the logits stay float32, so the softmax and the
      # loss are computed at full precision (Keras' mixed precision guide).
      outputs = tf.keras.layers.Activation(
          'linear', dtype='float32', name='logits_float32')(outputs)
    super().__init__(inputs=inputs, outputs=outputs,
                     name=type(self).__name__)
    self.image_shape = image_shape
    self.class_names = class_names
    self._model_options = dict(model_options)
    self._class_name_table = tf.constant(class_names)
    self._augmenter = None
    self._augment_in_train_step = True

  def create_model_io(self, input_shape: Tuple[int, int, int],
                      num_classes: int,
                      **model_options) -> Tuple[tf.Tensor, tf.Tensor]:
    """Returns (inputs, logits) of the architecture.

    The inputs are float pixels 0..255 of exactly `input_shape`; rescaling
    belongs inside the architecture. The outputs are unnormalised logits of
    shape (batch, num_classes).

    Abstract, but not through abc: Keras rewrites the bases of functional
    subclasses, which breaks ABCMeta's instantiation check.
    """
    raise NotImplementedError(
        f'{type(self).__name__} must implement create_model_io')

  @classmethod
  def fit_input_shape(cls, input_shape: Sequence[int],
                      given: bool) -> Tuple[int, int, int]:
    """The shape to train at, when the command starts.

    Below `min_input_size`, a shape the user gave is refused; the default
    one (the data's size) grows to the minimum, and the images are resized
    up to it, as the console says.
    """
    shape = _check_image_shape(input_shape)
    if all(d >= m for d, m in zip(shape, cls.min_input_size)):
      return shape
    if given:
      raise UserError(f'{_too_small(cls, shape)}: leave --input-shape out to '
                      'have the images resized up to that, or give a larger '
                      'one')
    fitted = (*(max(d, m) for d, m in zip(shape, cls.min_input_size)),
              shape[2])
    progress.report('%s takes images of at least %dx%d: resizing them up '
                    'from %dx%d to %dx%d (--input-shape sets another size)',
                    cls.__name__, *cls.min_input_size, *shape[:2],
                    *fitted[:2])
    return fitted

  @classmethod
  def resolve_options(cls, model_options: Dict[str, Any],
                      local: bool) -> Dict[str, Any]:
    """Checks the model options when the command starts, before any data is
    read; returns them as the Trainer will use them.

    Every name must be an argument of `create_model_io`. `local` says the
    Trainer runs on this machine (imgcls run, imgcls train), so files and
    downloads it needs can be checked now; on Kubeflow (imgcls compile) they
    are the Trainer pod's. A subclass checks its values here too.
    """
    parameters = inspect.signature(cls.create_model_io).parameters
    known = [n for n in parameters
             if n not in ('self', 'input_shape', 'num_classes')]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(model_options) - set(known))
    if unknown and not takes_any:
      raise UserError(f'{cls.__name__} has no model option '
                      f'{", ".join(unknown)}; its options: '
                      f'{", ".join(known) or "none"}')
    return dict(model_options)

  def model_option(self, name: str) -> Any:
    """An option's value: as given, else create_model_io's default."""
    if name in self._model_options:
      return self._model_options[name]
    return inspect.signature(self.create_model_io).parameters[name].default

  def training_stages(self) -> List[Stage]:
    """The fits of a training, in order, `--epochs` each.

    A transfer-learning class trains its new head on a frozen backbone
    first, then more of the network at a lower rate. Only pretrained layers
    should stay frozen: frozen random layers would never learn, so from a
    random start the whole network trains.
    """
    return [Stage(ALL_STAGE)]

  def augmentation(self) -> List[tf.keras.layers.Layer]:
    """Random preprocessing layers for training, applied in this order to
    float pixels 0..255 of the model's input shape.

    What fits the architecture and its images: a flip is harmless for a
    photo and turns a digit into another. None by default.
    """
    return []

  @classmethod
  def search_space(cls):
    """The keras_tuner.HyperParameters that `imgcls run --tune` searches.

    `learning_rate` is the optimizer's; any other name is passed to
    `create_model_io` as a model option, so a subclass tunes its own layers
    by declaring arguments there and values here. The base searches the
    learning rate alone.
    """
    import keras_tuner
    hp = keras_tuner.HyperParameters()
    hp.Float(names.LEARNING_RATE_HYPERPARAMETER, 1e-4, 1e-2, sampling='log')
    return hp

  def use_augmentation(self, enabled: bool, in_train_step: bool = True) -> None:
    """Turns the class's augmentation on or off for `fit`.

    It runs outside the functional graph: evaluation, prediction and the
    serving signatures never see it. In `train_step` (on the device), or,
    with in_train_step False, in the training input pipeline's parallel map,
    which `fit`'s caller applies from `input_augmentation()`.
    """
    layers = self.augmentation() if enabled else []
    self._augmenter = None
    self._augment_in_train_step = in_train_step
    if layers:
      # Built now, so that checkpoints taken before the first step hold it.
      self._augmenter = tf.keras.Sequential(layers, name='augmentation')
      self._augmenter.build((None, *self.image_shape))

  def input_augmentation(self):
    """The augmentation for the input pipeline to apply, or None."""
    return None if self._augment_in_train_step else self._augmenter

  def train_step(self, data):
    if self._augmenter is not None and self._augment_in_train_step:
      x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
      data = tf.keras.utils.pack_x_y_sample_weight(
          self._augmenter(x, training=True), y, sample_weight)
    return super().train_step(data)

  # The three predictors below become the SavedModel's signatures.

  @tf.function
  def predict_numpy_image(self, input_tensor):
    """A float batch (b, h, w, 1|3|4) of pixels 0..255.

    Called in-process it takes any h and w; served, see `_serve_pixels`.
    """
    return self._predict_pixels(
        image_ops.resize_pixels(input_tensor, self.image_shape))

  @tf.function
  def _serve_pixels(self, input_tensor):
    """serving_default: pixels of exactly the model's (h, w, channels).

    TF Serving's batching concatenates queued requests along dimension 0 and
    fails the whole batch when another dimension differs
    (batching_session.cc). So the signature declares the model's own shape,
    and refuses any other, as its placeholder alone would not: a request that
    fails here fails alone. Clients resize first, as the model would
    (imagedata.preprocessing.client_pixels).
    """
    found = tf.shape(input_tensor)[1:]
    check = tf.debugging.assert_equal(
        found, tf.constant(self.image_shape, tf.int32),
        message=f'{names.PIXELS_INPUT} must be a batch of '
        f'{list(self.image_shape)} pixels (height, width, channels); resize '
        f'before sending, or send encoded images to {names.SERVING_BYTES}')
    with tf.control_dependencies([check]):
      return self.predict_numpy_image(tf.identity(input_tensor))

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=names.BYTES_INPUT)
  ])
  def predict_bytes_image(self, image_bytes_string):
    """Encoded PNG/JPEG/BMP/GIF images, several per call, each of any size."""
    return self._predict_pixels(
        image_ops.decode_images(image_bytes_string, self.image_shape))

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=names.EXAMPLES_INPUT)
  ])
  def predict_examples(self, examples):
    """Serialized tf.Examples as the ExampleGen writes them (for TFMA)."""
    return self.predict_bytes_image(tf_examples.parse_image_bytes(examples))

  @tf.function(input_signature=[])
  def get_class_names(self):
    """The label vocabulary, in label order, for loaders of the SavedModel."""
    return self._class_name_table

  def _predict_pixels(self, pixels):
    logits = self(pixels, training=False)
    class_id = tf.argmax(logits, axis=-1)
    return {
        names.LOGITS_OUTPUT: logits,
        names.PROBABILITIES_OUTPUT: tf.nn.softmax(logits),
        names.CLASS_ID_OUTPUT: class_id,
        names.CLASS_NAME_OUTPUT: tf.gather(self._class_name_table, class_id),
    }

  def serving_signatures(self):
    return {
        names.SERVING_DEFAULT: self._serve_pixels.get_concrete_function(
            tf.TensorSpec([None, *self.image_shape], tf.float32,
                          name=names.PIXELS_INPUT)),
        names.SERVING_BYTES: self.predict_bytes_image.get_concrete_function(),
        names.SERVING_EXAMPLES: self.predict_examples.get_concrete_function(),
    }

  def save(self, filepath, overwrite=True, save_format=None, **kwargs):
    """Writes a SavedModel whose signatures are the three predictors.

    The format is always SavedModel ('tf'): it is what TF Serving loads, and
    the only Keras format that carries signatures.
    """
    del save_format
    kwargs.setdefault('signatures', self.serving_signatures())
    super().save(filepath, overwrite=overwrite, save_format='tf', **kwargs)

  def get_config(self):
    return {
        'input_shape': list(self.image_shape),
        'class_names': list(self.class_names),
        **self._model_options
    }

  @classmethod
  def from_config(cls, config, custom_objects=None):
    del custom_objects
    return cls(**config)


_REGISTRY: Dict[str, type] = {}


def register(cls: type) -> type:
  """A class decorator: `--model-type` finds `cls` by its class name.

  The shipped classes register; a user's class need not, as its dotted
  path finds it. A name that another class holds is refused, so a name means one
  class wherever it is read. The same class again (a module reloaded) takes
  its own place.
  """
  _check_is_model(cls, repr(cls))
  taken = _REGISTRY.get(cls.__name__)
  if taken is not None and _qualified_name(taken) != _qualified_name(cls):
    raise UserError(f'model type {cls.__name__!r} is {_qualified_name(taken)}'
                    f'; {_qualified_name(cls)} cannot register under that '
                    'name (--model-type takes its dotted path)')
  _REGISTRY[cls.__name__] = cls
  return cls


def registered() -> Dict[str, type]:
  """The model types found by class name: the shipped classes."""
  return dict(_REGISTRY)


def _qualified_name(cls: type) -> str:
  return f'{cls.__module__}.{cls.__qualname__}'


def _check_is_model(cls: Any, model_type: str) -> None:
  if not (isinstance(cls, type) and issubclass(cls, ImageClassifierModel)):
    raise UserError(f'{model_type!r} is not a subclass of ImageClassifierModel')


def _too_small(cls: type, shape: Tuple[int, int, int]) -> str:
  return (f'{cls.__name__} needs input of at least '
          f'{cls.min_input_size[0]}x{cls.min_input_size[1]}, got '
          f'{shape[0]}x{shape[1]}')


def _check_image_shape(input_shape) -> Tuple[int, int, int]:
  try:
    height, width, channels = (int(d) for d in input_shape)
  except (TypeError, ValueError):
    raise UserError(f'input_shape must be (height, width, channels), got '
                    f'{input_shape!r}') from None
  if height < 1 or width < 1 or channels not in (1, 3):
    raise UserError(f'input_shape must have positive height and width and 1 '
                    f'or 3 channels, got {input_shape!r}')
  return height, width, channels


@register
class LenetModel(ImageClassifierModel):
  """LeNet-5's layout (two conv/pool pairs, three dense layers), widened.

  32 and 64 filters instead of 6 and 16, and dropout, take it past 99% on
  MNIST in a few epochs; LeNet-5 itself reported 99.05%.

  Options (also its search space): conv1_filters, conv2_filters, dropout.
  """

  def create_model_io(self, input_shape, num_classes, conv1_filters=32,
                      conv2_filters=64, dropout=0.3):
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=input_shape, name='pixels')
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(int(conv1_filters), 5, padding='same',
                      activation='relu')(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(int(conv2_filters), 5, padding='same',
                      activation='relu')(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation='relu')(x)
    x = layers.Dropout(float(dropout))(x)
    x = layers.Dense(84, activation='relu')(x)
    outputs = layers.Dense(num_classes, name='logits')(x)
    return inputs, outputs

  def augmentation(self):
    """Small shifts, rotations and zooms, as handwriting varies; no flips,
    since a mirrored digit is another digit (or none)."""
    layers = tf.keras.layers
    return [
        layers.RandomTranslation(0.08, 0.08, fill_mode='constant'),
        layers.RandomRotation(0.03, fill_mode='constant'),  # about 11 degrees
        layers.RandomZoom(0.08, fill_mode='constant'),
    ]

  @classmethod
  def search_space(cls):
    hp = super().search_space()
    hp.Choice('conv1_filters', [16, 32, 48])
    hp.Choice('conv2_filters', [32, 64, 96])
    hp.Float('dropout', 0.1, 0.5, step=0.1)
    return hp


@register
class ResnetModel(ImageClassifierModel):
  """ResNet50V2 with a new head: fine-tuned from pretrained weights (the
  head first, then conv5), or trained whole from a random start.

  Options:
    weights: 'imagenet' (the default; fetched once into Keras' cache, see
      trainer/pretrained.py), the path of a local weights file of ResNet50V2
      without its top (an .h5 that Keras' load_weights reads), or None
      ('none' on the command line) for a random start.
  Grayscale input is repeated to three channels inside the model.
  """
  # Keras' ResNet50V2 refuses a smaller input (obtain_input_shape with
  # min_size=32, tf_keras/src/applications/resnet.py).
  min_input_size = (32, 32)
  _BACKBONE = 'resnet50v2'
  _TOP_BLOCK_PREFIX = 'conv5_'
  # From a random start, Keras' 0.99 averages BatchNorm's moving statistics
  # over some hundred steps, far more than a small dataset's few epochs hold:
  # validation sees statistics of the random network and lags far behind
  # training. 0.9 averages over about ten steps (docs/models.md).
  _SCRATCH_BN_MOMENTUM = 0.9
  WAYS_OUT = ('put the weights file where the Trainer can read it and pass '
              '--model-option weights=/path/to/resnet50v2_notop.h5 (see '
              'docs/models.md), or train from a random start with '
              '--model-option weights=none')

  # On Kubeflow every Trainer and Tuner pod would download the weights again
  # into its own fresh ~/.keras, and a cluster that cannot reach the URL
  # would fail at the Trainer, after the data steps: the run brings them.
  _NO_DOWNLOAD_IN_A_POD = (
      "weights=imagenet (ResnetModel's default) would be downloaded inside "
      f'every Trainer pod ({pretrained_weights.RESNET50V2_NOTOP.megabytes} '
      'MB, and a cluster that cannot reach the URL fails at the Trainer): '
      'copy the file onto the data PVC and pass --model-option '
      'weights=/data/weights/resnet50v2_notop.h5 (docs/models.md, "The '
      'ImageNet weights, without downloads in the Trainer"), or train from '
      'a random start with --model-option weights=none')

  @classmethod
  def resolve_options(cls, model_options, local):
    options = super().resolve_options(model_options, local)
    weights = options.get('weights', 'imagenet')
    if weights == 'imagenet':
      if not local:
        raise UserError(cls._NO_DOWNLOAD_IN_A_POD)
      pretrained_weights.ensure(pretrained_weights.RESNET50V2_NOTOP,
                                cls.WAYS_OUT)
    elif weights is not None:
      options['weights'] = _weights_path(weights, local)
    return options

  def create_model_io(self, input_shape, num_classes, weights='imagenet'):
    layers = tf.keras.layers
    height, width, channels = input_shape
    given_file = weights not in (None, 'imagenet')
    if weights == 'imagenet':
      # A file for Keras: its own download could hang (pretrained.py).
      weights = pretrained_weights.ensure(pretrained_weights.RESNET50V2_NOTOP,
                                          self.WAYS_OUT)
    inputs = tf.keras.Input(shape=input_shape, name='pixels')
    x = layers.Concatenate()([inputs] * 3) if channels == 1 else inputs
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)  # resnet_v2 preprocessing
    backbone = tf.keras.applications.ResNet50V2(
        include_top=False, weights=None if given_file else weights,
        input_shape=(height, width, 3), pooling='avg')
    if given_file:  # what Keras does with it, once checked (a Trainer pod's)
      backbone.load_weights(_checked_weights_file(weights, backbone))
    backbone._name = self._BACKBONE
    if weights is None:
      for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
          layer.momentum = self._SCRATCH_BN_MOMENTUM
    x = backbone(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(num_classes, name='logits')(x)
    return inputs, outputs

  def training_stages(self):
    """Pretrained: the head alone on the frozen backbone, then the conv5
    blocks too at a tenth of the rate. From a random start, one stage."""
    if self.model_option('weights') is None:
      return super().training_stages()
    return [Stage('head', 1.0, self._freeze_backbone),
            Stage('top_blocks', 0.1, self._freeze_all_but_top_blocks)]

  def _freeze_backbone(self):
    self.get_layer(self._BACKBONE).trainable = False

  def _freeze_all_but_top_blocks(self):
    for layer in self.get_layer(self._BACKBONE).layers:
      # BatchNorm stays frozen, as in Keras' fine-tuning guide.
      layer.trainable = (layer.name.startswith(self._TOP_BLOCK_PREFIX) and
                         not isinstance(layer,
                                        tf.keras.layers.BatchNormalization))

  def augmentation(self):
    """Flips, crops (a zoom into a shifted window) and colour jitter: what a
    photo of the same object may look like."""
    layers = tf.keras.layers
    return [
        layers.RandomFlip('horizontal'),
        layers.RandomZoom((-0.25, 0.0)),  # negative: zoom in, i.e. crop
        layers.RandomTranslation(0.1, 0.1),
        layers.RandomBrightness(0.15, value_range=(0, 255)),
        layers.RandomContrast(0.15),
    ]



def _weights_path(weights: str, local: bool) -> str:
  """A local file is checked now; the Trainer pod's is checked there."""
  if not local:
    if not os.path.isabs(weights):
      raise UserError(f'--model-option weights={weights}: on Kubeflow, give '
                      "the absolute path of the file in the Trainer's "
                      'volumes, e.g. /data/weights/resnet50v2_notop.h5')
    return weights
  return _checked_weights_file(os.path.abspath(weights))


def _checked_weights_file(path: str, backbone=None) -> str:
  """`path`, when Keras can load it into ResNet50V2 without its top, else a
  UserError naming it and what is wrong with it."""

  def expected():
    # The shapes of its weights do not depend on the input's size.
    network = backbone if backbone is not None else (
        tf.keras.applications.ResNet50V2(
            include_top=False, weights=None,
            input_shape=(*ResnetModel.min_input_size, 3)))
    return pretrained_weights.layers_with_weights(network)

  problem = pretrained_weights.file_problem(path, expected)
  if problem:
    raise UserError(f'--model-option weights={path}: {problem}; give a '
                    'weights file of ResNet50V2 without its top, '
                    "'imagenet' or 'none'")
  return path


def model_class(model_type: str) -> type:
  """A registered class by its name, or any by its dotted path
  `pkg.module.Class`."""
  if '.' in model_type:
    module_name, _, class_name = model_type.rpartition('.')
    try:
      module = importlib.import_module(module_name)
    except ImportError as e:
      raise UserError(f'cannot import {module_name!r} for model type '
                      f'{model_type!r}: {e}') from e
    cls = getattr(module, class_name, None)
    if cls is None:
      raise UserError(f'module {module_name!r} has no class {class_name!r}')
  else:
    cls = _REGISTRY.get(model_type)
    if cls is None:
      raise UserError(f'unknown model type {model_type!r}; known: '
                      f'{", ".join(sorted(_REGISTRY))}, or a dotted path '
                      f'my_package.my_module.MyModel')
  _check_is_model(cls, model_type)
  return cls


def build_model(model_type: str, input_shape, class_names,
                **model_options) -> ImageClassifierModel:
  return model_class(model_type)(input_shape, class_names, **model_options)
