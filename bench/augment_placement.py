"""Where LeNet's augmentation runs on a CPU: train_step or tf.data's map.

    python -m bench.augment_placement CLASS_FOLDERS_ROOT [--rounds N]

The Trainer's own loop pieces (trainer.training.build_model, trainer.dataset)
with the same data and initial weights, taking turns; prints each fit's
epoch seconds and the best second epoch (the first also decodes and caches)
of each side. Not part of `python -m bench`: a check of issue 26's choice,
whose figures bench/results.json records with the accuracy benchmark.
"""
import argparse
import os
import sys
import time

import tensorflow as tf

from imgcls.imagedata import class_folders
from imgcls.trainer import dataset, training
from imgcls.trainer.config import TrainingConfig

_SIDES = {'train_step': 1, 'map': 0}  # the GPU count that picks each side


class _EpochSeconds(tf.keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.seconds = []

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.seconds.append(time.perf_counter() - self._start)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('root')
  parser.add_argument('--rounds', type=int, default=2)
  args = parser.parse_args(argv)
  train, test = class_folders.read_train_test(
      os.path.join(args.root, 'train'), os.path.join(args.root, 'test'))
  config = TrainingConfig(epochs=2)
  best, weights = {}, None
  for _ in range(args.rounds):
    for side, gpus in _SIDES.items():
      where = training.Devices(tf.distribute.get_strategy(), 'float32', gpus)
      model = training.build_model(config, train.class_names, where)
      weights = weights or model.get_weights()
      model.set_weights(weights)
      inputs = dataset.files_inputs(train, test, config, config.batch_size)
      model.compile(optimizer='adam',
                    loss=tf.keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True))
      timer = _EpochSeconds()
      model.fit(dataset.augmented(inputs.train, model.input_augmentation()),
                epochs=config.epochs, callbacks=[timer], verbose=0)
      best[side] = min(best.get(side, float('inf')), timer.seconds[-1])
      print(f'{side}: epochs {[round(s, 1) for s in timer.seconds]} s, load '
            f'{", ".join(f"{x:.2f}" for x in os.getloadavg())}', flush=True)
  print('best second epoch: ' +
        ', '.join(f'{side} {seconds:.1f} s' for side, seconds in best.items()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
