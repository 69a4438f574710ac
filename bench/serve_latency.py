"""4. Serving: latency over REST and gRPC against the signature in-process.

The server is the project's development stand-in for TF Serving,
dev_server.server.ModelServer, started by `imgcls serve` in its own process on
127.0.0.1 (as TF Serving would be: client and server do not share a Python
interpreter). The clients are the project's clients.client.RestClient and
GrpcClient. The peer is the same SavedModel's `serving_bytes` signature
called in this process (contract.saved_model.SavedClassifier). Requests go
one at a time, so latency is not queueing; req/s is that closed loop's rate.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Sequence

import numpy as np

from bench import common
from bench import data
from imagedata import data_layout
from clients import client
from trainer import models
from contract import names
from contract import saved_model
from trainer.config import TrainingConfig

NAME = 'serving'
TITLE = 'Serving: REST and gRPC'
MODEL_NAME = 'LenetModel'
BATCHES = (1, 32)
# Allowed p50 latency over the in-process call, in ms.
TARGET_MS = {'gRPC': 2.0, 'REST': 5.0}
_IN_PROCESS = 'in-process signature'
_INPUT = 'image_bytes_string'
_PORTS = re.compile(r'(REST|gRPC): \S*?:(\d+)')
_START_TIMEOUT_S = 180


def run(session: common.Session) -> common.Result:
  requests = 20 if session.quick else 1000
  warmup = 3 if session.quick else 50
  out = os.path.join(session.work_dir, NAME)
  shutil.rmtree(out, ignore_errors=True)
  base_path = os.path.join(out, 'models', MODEL_NAME)
  images = _test_images(data.dataset(session, 300 if session.quick else 7_000),
                        max(BATCHES))
  class_names = [str(i) for i in range(10)]
  # Latency does not depend on the weights: an untrained LeNet will do.
  models.build_model(MODEL_NAME, TrainingConfig().input_shape,
                     class_names).save(os.path.join(base_path, '1'))
  local = saved_model.SavedClassifier(os.path.join(base_path, '1'))
  calls: Dict[str, Callable[[List[bytes]], object]] = {
      _IN_PROCESS: local.predict_bytes
  }
  server, ports = _start_server(base_path, os.path.join(out, 'server.log'))
  try:
    rest = client.RestClient('127.0.0.1', ports['REST'], MODEL_NAME)
    grpc = client.GrpcClient('127.0.0.1', ports['gRPC'], MODEL_NAME)
    for label, protocol in (('gRPC', grpc), ('REST', rest)):
      calls[label] = lambda batch, protocol=protocol: protocol.predict(
          names.SERVING_BYTES, {_INPUT: np.array(batch, dtype=object)})
    latencies = {}
    for batch in BATCHES:
      for label, seconds in _latencies(calls, images[:batch], requests,
                                       warmup).items():
        latencies[label, batch] = seconds
    grpc.close()
  finally:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    server.stdout.close()
  return _result(session, requests, latencies)


def _test_images(data_root: str, count: int) -> List[bytes]:
  files = data_layout.resolve(data_root).files[data_layout.TEST][:count]
  encoded = []
  for f in files:
    with open(f.path, 'rb') as handle:
      encoded.append(handle.read())
  return encoded


def _start_server(base_path: str, log_path: str):
  """`imgcls serve` on free ports; returns (process, {protocol: port})."""
  with open(log_path, 'w') as log:
    server = subprocess.Popen(
        [sys.executable, '-m', 'imgcls.cli', 'serve', '--model-base-path',
         base_path, '--model-name', MODEL_NAME, '--rest-port', '0',
         '--grpc-port', '0'],
        stdout=subprocess.PIPE, stderr=log, text=True)
  ports = {}
  deadline = time.monotonic() + _START_TIMEOUT_S
  # It prints the ports once the model is loaded and both ports are open.
  while len(ports) < 2 and time.monotonic() < deadline:
    line = server.stdout.readline()
    if not line:
      break
    ports.update((m.group(1), int(m.group(2))) for m in _PORTS.finditer(line))
  if len(ports) < 2:
    server.kill()
    raise RuntimeError(f'imgcls serve did not start; see {log_path}')
  return server, ports


def _latencies(calls, batch: Sequence[bytes], requests: int,
               warmup: int) -> Dict[str, List[float]]:
  """Seconds per request of each path, taking turns request by request, so
  that a busy spell of the machine hits every path alike."""
  for call in calls.values():
    for _ in range(warmup):
      call(batch)
  seconds = {label: [] for label in calls}
  for _ in range(requests):
    for label, call in calls.items():
      start = time.perf_counter()
      call(batch)
      seconds[label].append(time.perf_counter() - start)
  return seconds


def _result(session, requests, latencies) -> common.Result:
  p50 = {key: common.percentile(s, 50) * 1e3 for key, s in latencies.items()}
  figures, notes = [], []
  for batch in BATCHES:
    base = p50[_IN_PROCESS, batch]
    for label, allowed in TARGET_MS.items():
      extra = p50[label, batch] - base
      met = extra <= allowed
      figures.append(
          common.Figure(f'{label} p50 latency, {batch} image(s)/request',
                        p50[label, batch], 'ms', _IN_PROCESS, base,
                        f'<= in-process + {allowed:g} ms', met))
      if not met:
        notes.append(f'Not met: {label} with {batch} image(s) per request '
                     f'adds {extra:.1f} ms at p50 (allowed {allowed:g} ms).')
  details = [['path', 'images/request', 'p50 (ms)', 'p99 (ms)', 'req/s',
              'images/s']]
  for (label, batch), seconds in latencies.items():
    rate = len(seconds) / sum(seconds)
    details.append([label, str(batch), f'{p50[label, batch]:.2f}',
                    f'{common.percentile(seconds, 99) * 1e3:.2f}',
                    f'{rate:,.0f}', f'{rate * batch:,.0f}'])
  if notes:
    notes.append(
        'The server is Python: each request is decoded from JSON or '
        'protobuf into numpy, checked against the SignatureDef, run, and '
        'encoded back, with the GIL held between TensorFlow calls, and the '
        'clients pay the same conversions on their side; on 2 cores client '
        'and server also compete for the CPU. TF Serving does this in C++.')
  return common.Result(
      name=NAME, title=TITLE,
      setup=(f'Server: dev_server.server.ModelServer via `imgcls serve` '
             f'(a separate process on 127.0.0.1), the project\'s Python '
             f'stand-in for TF Serving, not TF Serving itself. Signature '
             f'`serving_bytes` with {data.describe(session)} test PNGs; '
             f'{requests} requests per row after a warm-up, one client, one '
             f'request in flight; the three paths take turns, request by '
             f'request.'),
      figures=figures, details=details, notes=notes, quick=session.quick)
