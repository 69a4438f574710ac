"""4. Serving: latency over REST and gRPC against the signature in-process.

The server is the project's development stand-in for TF Serving,
imgcls.dev_server.server.ModelServer, started by `imgcls serve` in its own
process on 127.0.0.1 (as TF Serving would be: client and server do not share
a Python interpreter). The clients are the project's clients.client.RestClient
and GrpcClient. The peer is the same SavedModel's `serving_bytes` signature
called in this process (contract.saved_model.SavedClassifier). Requests go
one at a time, so latency is not queueing; req/s is that closed loop's rate.

Two more measurements: requests/s of 8 concurrent gRPC clients against the
server with and without `--enable_batching`; and the first request's latency
after a version swap, with and without a warm-up file
(assets.extra/tf_serving_warmup_requests) in the new version.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Sequence

import numpy as np

from bench import common, data
from imgcls.clients import client
from imgcls.contract import names, saved_model
from imgcls.imagedata import data_layout
from imgcls.serving_dir import versions as model_versions
from imgcls.trainer import models
from imgcls.trainer.config import TrainingConfig

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
CONCURRENT_CLIENTS = 8
_BATCHING_PARAMETERS = ('max_batch_size { value: 64 } batch_timeout_micros '
                        '{ value: 2000 } num_batch_threads { value: 2 }')
_SWAP_POLL_S = '0.2'


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
  concurrent = _concurrent_rates(base_path, out, images[0],
                                 requests // 2 or 1)
  swaps = _first_requests_after_swaps(base_path, out, images[0])
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
    _stop(server)
  return _result(session, requests, latencies, concurrent, swaps)


def _concurrent_rates(base_path, out, image, per_client) -> Dict[str, float]:
  """Requests/s of CONCURRENT_CLIENTS gRPC clients, batching off and on."""
  batching_file = os.path.join(out, 'batching.config')
  with open(batching_file, 'w') as f:
    f.write(_BATCHING_PARAMETERS)
  rates = {}
  for label, extra in (('without batching', []),
                       ('with batching', ['--enable_batching',
                                          f'--batching_parameters_file='
                                          f'{batching_file}'])):
    server, ports = _start_server(
        base_path, os.path.join(out, f'server-{len(rates)}.log'), extra)
    try:
      rates[label] = _closed_loop_rate(ports['gRPC'], image, per_client)
    finally:
      _stop(server)
  return rates


def _closed_loop_rate(grpc_port: int, image: bytes, per_client: int) -> float:
  clients = [client.GrpcClient('127.0.0.1', grpc_port, MODEL_NAME)
             for _ in range(CONCURRENT_CLIENTS)]
  batch = {_INPUT: np.array([image], dtype=object)}
  for each in clients:
    each.predict(names.SERVING_BYTES, batch)  # connect and warm up

  def send(each):
    for _ in range(per_client):
      each.predict(names.SERVING_BYTES, batch)

  threads = [threading.Thread(target=send, args=(c,)) for c in clients]
  start = time.perf_counter()
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  seconds = time.perf_counter() - start
  for each in clients:
    each.close()
  return CONCURRENT_CLIENTS * per_client / seconds


def _first_requests_after_swaps(base_path, out, image) -> Dict[str, float]:
  """Seconds of the first request to a freshly swapped-in version, without
  and with a warm-up file in it."""
  from imgcls.dev_server import warmup
  swap_base = os.path.join(out, 'swap', MODEL_NAME)
  shutil.copytree(os.path.join(base_path, '1'), os.path.join(swap_base, '1'))
  server, ports = _start_server(swap_base, os.path.join(out, 'swap.log'),
                                ['--file_system_poll_wait_seconds',
                                 _SWAP_POLL_S])
  rest = client.RestClient('127.0.0.1', ports['REST'], MODEL_NAME)
  grpc = client.GrpcClient('127.0.0.1', ports['gRPC'], MODEL_NAME)
  batch = {_INPUT: np.array([image], dtype=object)}
  seconds = {}
  try:
    for version, label in ((2, 'without warm-up'), (3, 'with warm-up')):
      model_versions.publish(
          swap_base, lambda tmp, src=os.path.join(base_path, '1'):
          shutil.copytree(src, tmp), min_version=version)
      if label == 'with warm-up':
        _write_warmup_file(warmup.requests_path(
            os.path.join(swap_base, str(version))), image)
      while not any(s.version == version and s.state == 'AVAILABLE'
                    for s in rest.status()):
        time.sleep(0.05)
      start = time.perf_counter()
      grpc.predict(names.SERVING_BYTES, batch)
      seconds[label] = time.perf_counter() - start
  finally:
    grpc.close()
    _stop(server)
  return seconds


def _write_warmup_file(path: str, image: bytes) -> None:
  """One serving_bytes PredictionLog record, as the Pusher writes them."""
  import tensorflow as tf
  from tensorflow_serving.apis import prediction_log_pb2
  log = prediction_log_pb2.PredictionLog()
  log.predict_log.request.model_spec.signature_name = names.SERVING_BYTES
  log.predict_log.request.inputs[_INPUT].CopyFrom(
      tf.make_tensor_proto([image]))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(log.SerializeToString())


def _stop(server) -> None:
  server.send_signal(signal.SIGTERM)
  server.wait(timeout=30)
  server.stdout.close()


def _test_images(data_root: str, count: int) -> List[bytes]:
  files = data_layout.resolve(data_root).files[data_layout.TEST][:count]
  encoded = []
  for f in files:
    with open(f.path, 'rb') as handle:
      encoded.append(handle.read())
  return encoded


def _start_server(base_path: str, log_path: str, extra_flags=()):
  """`imgcls serve` on free ports; returns (process, {protocol: port})."""
  with open(log_path, 'w') as log:
    server = subprocess.Popen(
        [sys.executable, '-m', 'imgcls.cli', 'serve', '--model_base_path',
         base_path, '--model_name', MODEL_NAME, '--rest_api_port', '0',
         '--port', '0', *extra_flags],
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


def _result(session, requests, latencies, concurrent,
            swaps) -> common.Result:
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
  details.append([f'gRPC, {CONCURRENT_CLIENTS} concurrent clients', '1', '',
                  '', '', ''])
  for label, rate in concurrent.items():
    details.append([f'  {label}', '1', '', '', f'{rate:,.0f}',
                    f'{rate:,.0f}'])
  for label, seconds in swaps.items():
    details.append([f'first request after a version swap, {label}', '1',
                    f'{seconds * 1e3:.2f}', '', '', ''])
  if notes:
    notes.append(
        'The server is Python: each request is decoded from JSON or '
        'protobuf into numpy, checked against the SignatureDef, run, and '
        'encoded back, with the GIL held between TensorFlow calls, and the '
        'clients pay the same conversions on their side; on 2 cores client '
        'and server also compete for the CPU. TF Serving does this in C++.')
  notes.append(
      f'With {CONCURRENT_CLIENTS} concurrent clients: '
      f'{concurrent["without batching"]:,.0f} req/s without batching, '
      f'{concurrent["with batching"]:,.0f} with ({_BATCHING_PARAMETERS}). '
      f'First request after a swap: {swaps["without warm-up"] * 1e3:.1f} ms '
      f'without warm-up, {swaps["with warm-up"] * 1e3:.1f} ms with.')
  return common.Result(
      name=NAME, title=TITLE,
      setup=(f'Server: imgcls.dev_server.server.ModelServer via `imgcls serve` '
             f'(a separate process on 127.0.0.1), the project\'s Python '
             f'stand-in for TF Serving, not TF Serving itself. Signature '
             f'`serving_bytes` with {data.describe(session)} test PNGs; '
             f'{requests} requests per row after a warm-up, one client, one '
             f'request in flight; the three paths take turns, request by '
             f'request.'),
      figures=figures, details=details, notes=notes, quick=session.quick)
