"""The whole pipeline's floor: load the class folders, fit LeNet, save it.

    python -m bench.plain_train --data-root DIR --out DIR --epochs N

What a plain script does with the same data: PIL into numpy arrays, the same
model class and augmentation, optimizer, loss, batch size and epochs
(validating on the test split each epoch, as the Trainer does), and the same
SavedModel export. No TFRecords, no evaluation, no checks, no metadata.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image
import tensorflow as tf

from imgcls.trainer import models
from imgcls.trainer.config import TrainingConfig


def load_split(split_dir: str):
  """(pixels (n, 28, 28, 1) float32, labels) of `<split_dir>/<class>/*`."""
  pixels, labels = [], []
  for label, name in enumerate(sorted(os.listdir(split_dir))):
    class_dir = os.path.join(split_dir, name)
    for file_name in sorted(os.listdir(class_dir)):
      with Image.open(os.path.join(class_dir, file_name)) as image:
        pixels.append(np.asarray(image.convert('L'), np.float32))
      labels.append(label)
  return np.stack(pixels)[..., np.newaxis], np.array(labels)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-root', required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--epochs', type=int, required=True)
  args = parser.parse_args(argv)
  config = TrainingConfig(epochs=args.epochs)
  x, y = load_split(os.path.join(args.data_root, 'train'))
  test = load_split(os.path.join(args.data_root, 'test'))
  class_names = sorted(os.listdir(os.path.join(args.data_root, 'train')))
  model = models.build_model(config.model_type, config.input_shape,
                             class_names)
  # The class's augmentation, as the Trainer's default (--augment default).
  model.use_augmentation(config.augment == 'default')
  model.compile(
      optimizer=tf.keras.optimizers.Adam(config.learning_rate),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy('accuracy')])
  model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs,
            validation_data=test, shuffle=True, verbose=2)
  model.save(args.out)
  return 0


if __name__ == '__main__':
  sys.exit(main())
