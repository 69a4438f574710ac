"""A training process that kills itself part-way, for the tests of resuming.

Installed in a fresh process before training: Keras' BackupAndRestore then
prints each epoch it starts, and the process sends itself a real SIGKILL
right after the backup of the given epoch, as an OOM kill or a lost node
would: nothing gets to clean up.
"""
import os
import signal
from typing import Optional

import tensorflow as tf

from imgcls.trainer import cluster


def kill_after_backup(last_epoch: int, replica: Optional[int] = None,
                      signum: int = signal.SIGKILL) -> None:
  """Kills the process once `last_epoch` (from 1; 0: never) is backed up; with
  `replica`, only the replica of that index does (trainer/cluster.py).
  `signum` SIGSTOP: the process hangs instead, alive."""

  class KillAfterBackup(tf.keras.callbacks.BackupAndRestore):

    def on_epoch_begin(self, epoch, logs=None):
      super().on_epoch_begin(epoch, logs)
      print(f'started epoch {epoch + 1}', flush=True)

    def on_epoch_end(self, epoch, logs=None):
      super().on_epoch_end(epoch, logs)
      if epoch + 1 == last_epoch and replica in (None, cluster.replica().index):
        os.kill(os.getpid(), signum)

  tf.keras.callbacks.BackupAndRestore = KillAfterBackup
