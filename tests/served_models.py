"""Helpers for the serving tests: a small servable model, images, pushes.

The model is untrained (its answers need only be consistent, not right), and
saving one takes seconds, so tests save it once and push copies of it.
"""
import os
import shutil
import socket
import threading
import time
from typing import Callable, Sequence

import numpy as np

from imgcls.clients.client import (
  GrpcClient,
  RequestFailed,
  RestClient,
  ServerUnreachable,
)
from imgcls.serving_dir import versions as model_versions
from tests import images

CLASS_NAMES = ('cat', 'dog', 'fox')
MODEL_NAME = 'Lenet'


def save_model(path: str, class_names: Sequence[str] = CLASS_NAMES) -> str:
  """A LenetModel SavedModel, with all serving signatures, at `path`."""
  from imgcls.trainer import models  # slow
  models.build_model('LenetModel', (28, 28, 1), class_names).save(path)
  return path


def push_version(saved_model_dir: str, base_path: str, version: int) -> str:
  """Copies a SavedModel in as `version` the way the pipeline pushes: to a
  hidden temporary directory, renamed to the version number once complete."""
  pushed = model_versions.publish(
      base_path, lambda tmp_dir: shutil.copytree(saved_model_dir, tmp_dir),
      min_version=version)
  assert pushed == version, f'{base_path} already has versions >= {version}'
  return os.path.join(base_path, str(version))


def noise(size=(28, 28), mode='L', seed=0) -> np.ndarray:
  """Random pixels of `size` (width, height), grayscale or RGB."""
  rng = np.random.default_rng(seed)
  shape = (size[1], size[0]) + ((3,) if mode == 'RGB' else ())
  return rng.integers(0, 256, shape, dtype=np.uint8)


def png(size=(28, 28), mode='L', seed=0) -> bytes:
  """A random image of `size` (width, height), PNG-encoded."""
  return images.encode(noise(size, mode, seed))


def write_class_folders(root: str, class_names: Sequence[str] = CLASS_NAMES,
                        per_class: int = 4) -> str:
  """`root/<class>/*.png`: grayscale and colour images, of two sizes."""
  def pixels(label, n):
    size, mode = ((28, 28), 'L') if n % 2 else ((32, 30), 'RGB')
    return noise(size, mode, seed=label * per_class + n)

  return images.write_class_folders(
      root, {name: per_class for name in class_names},
      classes=class_names, pixels=pixels)


def free_port() -> int:
  """A port nothing listens on (for tests of unreachable servers)."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0,
             interval_s: float = 0.05) -> bool:
  """Whether `condition()` became true within `timeout_s`."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(interval_s)
  return condition()


def save_half_plus_two(path: str) -> str:
  """TF Serving's test model, saved_model_half_plus_two: y = x / 2 + 2 for
  float inputs of any shape, as its own REST handler tests use it; plus a
  signature with no inputs."""
  import tensorflow as tf  # slow
  module = tf.Module()
  module.half_plus_two = tf.function(
      lambda x: {'y': x * 0.5 + 2.0},
      input_signature=[tf.TensorSpec(None, tf.float32, name='x')])
  module.no_inputs = tf.function(lambda: {'y': tf.constant([1.0])},
                                 input_signature=[])
  tf.saved_model.save(module, path, signatures={
      'serving_default': module.half_plus_two,
      'no_inputs': module.no_inputs,
  })
  return path


# Bounds of Load's request loop.
LOAD_SECONDS = 60
LOAD_REQUESTS = 20000


class Load:
  """Threads that send serving_bytes requests over REST and gRPC until
  stopped, LOAD_SECONDS pass or LOAD_REQUESTS are sent."""

  def __init__(self, server, name: str = MODEL_NAME):
    self._image = np.array([png()], dtype=object)
    self._stop = threading.Event()
    self.failures = []
    self.versions_seen = []
    self.count = 0
    self._lock = threading.Lock()
    self._threads = [
        threading.Thread(target=self._send, args=(client,)) for client in (
            RestClient('127.0.0.1', server.rest_port, name),
            GrpcClient('127.0.0.1', server.grpc_port, name),
        )
    ]

  def __enter__(self):
    for thread in self._threads:
      thread.start()
    return self

  def __exit__(self, *exc_info):
    self._stop.set()
    for thread in self._threads:
      thread.join()

  def _send(self, client):
    deadline = time.monotonic() + LOAD_SECONDS
    while (not self._stop.is_set() and time.monotonic() < deadline and
           self.count < LOAD_REQUESTS):
      try:
        answer = client.predict('serving_bytes',
                                {'image_bytes_string': self._image})
        with self._lock:
          self.count += 1
          if answer.version is not None:
            self.versions_seen.append(answer.version)
      except (RequestFailed, ServerUnreachable) as e:
        with self._lock:
          self.count += 1
          self.failures.append(f'{client.protocol}: {e}')

  def requests_since_version(self, version) -> int:
    with self._lock:
      return (len(self.versions_seen) - self.versions_seen.index(version)
              if version in self.versions_seen else 0)
