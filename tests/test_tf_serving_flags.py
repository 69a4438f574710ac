"""The local server started with TF Serving's flags, and the features they
turn on: the model config file, batching, warm-up and Prometheus metrics;
and its limits against hostile clients. Real REST and gRPC on 127.0.0.1."""
import http.client
import math
import os
import pathlib
import re
import socket
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
  predict_pb2,
  prediction_log_pb2,
  prediction_service_pb2_grpc,
)
import yaml

from imgcls.cli import build_parser
from imgcls.clients.client import GrpcClient, RequestFailed, RestClient
from imgcls.contract.errors import UserError
from imgcls.dev_server import config_files, warmup
from imgcls.dev_server.cli import _config
from imgcls.dev_server.server import ModelServer, ServerConfig
from tests import served_models as testing

_KUBERNETES = pathlib.Path(__file__).parent.parent / 'kubernetes' / 'base'
IMAGE = np.array([testing.png()], dtype=object)


def _serve(argv):
  return ModelServer(_config(build_parser().parse_args(['serve', *argv])))


# The Deployment's own args.


def _rendered_base():
  result = subprocess.run(['kubectl', 'kustomize', str(_KUBERNETES)],
                          capture_output=True, text=True, check=True)
  return list(yaml.safe_load_all(result.stdout))


def _localizer(container: dict, root: pathlib.Path):
  """Maps the pod's paths (its volume mounts), in a text, under `root`."""
  mounts = '|'.join(re.escape(m['mountPath'])
                    for m in container['volumeMounts'])
  pattern = re.compile(rf'(?<![\w./-])({mounts})(?=/|"|$)')
  return lambda text: pattern.sub(lambda m: str(root) + m.group(1), text)


def _cpus(quantity: str) -> float:
  return float(quantity[:-1]) / 1000 if quantity.endswith('m') else float(
      quantity)


def _env_value(variable: dict, container: dict) -> str:
  """An env var's value as the kubelet gives it: literal, or a resource
  limit over its divisor, rounded up."""
  if 'value' in variable:
    return variable['value']
  field = variable['valueFrom']['resourceFieldRef']
  limit = container['resources']['limits'][field['resource'].split('.')[1]]
  return str(math.ceil(_cpus(limit) / _cpus(field.get('divisor', '1'))))


def _expand(arg: str, container: dict) -> str:
  """Kubernetes' $(VAR) expansion of container args."""
  for variable in container.get('env', []):
    arg = arg.replace(f'$({variable["name"]})',
                      _env_value(variable, container))
  return arg


def _deployment_args(root: pathlib.Path):
  """The tfserving container's args, with its ConfigMaps written under
  `root` at their mount paths, the paths mapped there, and ports 0 (a port
  is this machine's, like a path)."""
  documents = _rendered_base()
  config_maps = {d['metadata']['name']: d['data'] for d in documents
                 if d['kind'] == 'ConfigMap'}
  pod = next(d for d in documents if d['kind'] == 'Deployment')['spec'][
      'template']['spec']
  container = pod['containers'][0]
  local = _localizer(container, root)
  volumes = {v['name']: v for v in pod['volumes']}
  for mount in container['volumeMounts']:
    config_map = volumes[mount['name']].get('configMap')
    if config_map:
      directory = pathlib.Path(local(mount['mountPath']))
      directory.mkdir(parents=True)
      for file_name, text in config_maps[config_map['name']].items():
        (directory / file_name).write_text(local(text))
  args = [local(_expand(a, container)) for a in container['args']]
  ports = ('--port=', '--rest_api_port=')
  return [a.split('=')[0] + '=0' if a.startswith(ports) else a
          for a in args], container


def test_the_deployments_args_serve_over_rest_and_grpc(tmp_path, base_path):
  args, container = _deployment_args(tmp_path)
  assert container['command'] == ['/usr/bin/tensorflow_model_server']
  config_file = next(a for a in args if a.startswith('--model_config_file='))
  (model,) = config_files.read_model_config_file(config_file.split('=', 1)[1])
  os.makedirs(model.base_path)
  os.symlink(os.path.join(base_path, '1'), os.path.join(model.base_path, '1'))
  model_name = model.name
  with _serve(args) as server:
    for client in (RestClient('127.0.0.1', server.rest_port, model_name),
                   GrpcClient('127.0.0.1', server.grpc_port, model_name)):
      answer = client.predict('serving_bytes', {'image_bytes_string': IMAGE})
      assert answer.outputs['class_name'][0].decode() in testing.CLASS_NAMES
    page = _get(server, '/monitoring/prometheus/metrics')[1].decode()
    # TF Serving's names and format (util.cc, prometheus_exporter.cc).
    assert (f':tensorflow:serving:request_count{{model_name="{model_name}",'
            f'status="OK"}} 2') in page
    for api, entrypoint in (('predict', 'REST'), ('Predict', 'GRPC')):
      labels = (f'model_name="{model_name}",API="{api}",'
                f'entrypoint="{entrypoint}"')
      assert (f':tensorflow:serving:request_latency_bucket{{{labels},'
              f'le="-1.79769e+308"}} 0') in page
      assert (f':tensorflow:serving:request_latency_bucket{{{labels},'
              f'le="+Inf"}} 1') in page
    assert ':tensorflow:cc:saved_model:load_latency{model_path=' in page


def test_flags_with_no_local_meaning_are_accepted(base_path):
  args = build_parser().parse_args([
      'serve', f'--model_base_path={base_path}', '--model_name=m',
      '--tensorflow_intra_op_parallelism=2', '--rest_api_timeout_in_ms=5000',
      '--enable_grpc_healthcheck_service'
  ])
  assert args.ignored_tensorflow_intra_op_parallelism == '2'
  assert _config(args).model_base_path == base_path


def test_a_batching_file_without_enable_batching_is_refused(tmp_path):
  with pytest.raises(UserError, match='without setting'):
    ModelServer(ServerConfig(model_config_file=str(tmp_path / 'x'),
                             batching_parameters_file=str(tmp_path / 'b')))


# The model config file.


def _write_config(path: pathlib.Path, models) -> str:
  entries = ''.join(
      f'config {{ name: "{name}" base_path: "{base}" model_platform: '
      f'"tensorflow" {extra} }} ' for name, base, extra in models)
  path.write_text(f'model_config_list {{ {entries} }}')
  return str(path)


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  return testing.save_model(str(tmp_path_factory.mktemp('saved') / 'model'))


def test_policies_labels_several_models_and_rereading(tmp_path, saved):
  a, b = str(tmp_path / 'A'), str(tmp_path / 'B')
  for version in (1, 2, 3):
    testing.push_version(saved, a, version)
  testing.push_version(saved, b, 5)
  config = tmp_path / 'models.config'
  _write_config(config, [
      ('A', a, 'model_version_policy { specific { versions: 1 versions: 3 }}'),
      ('B', b, 'model_version_policy { all {} }'),
  ])
  with ModelServer(ServerConfig(
      model_config_file=str(config), model_config_file_poll_wait_seconds=0.2,
      poll_seconds=0.1, rest_port=0, grpc_port=0)) as server:
    rest_a = RestClient('127.0.0.1', server.rest_port, 'A')
    assert {s.version: s.state for s in rest_a.status()} == {
        1: 'AVAILABLE', 3: 'AVAILABLE'}
    rest_b = RestClient('127.0.0.1', server.rest_port, 'B')
    assert rest_b.status()[0].version == 5
    # Labels name available versions; the re-read config serves them.
    _write_config(config, [
        ('A', a, 'model_version_policy { specific { versions: 1 versions: 3 }}'
         ' version_labels { key: "stable" value: 1 }'),
    ])
    assert testing.wait_for(lambda: _label_answers(server, 'stable') == 1)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}'))
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.version_label = 'A', 'stable'
    request.model_spec.signature_name = 'serving_bytes'
    request.inputs['image_bytes_string'].CopyFrom(tf.make_tensor_proto(IMAGE))
    assert stub.Predict(request, timeout=60).model_spec.version.value == 1
    # Model B left the config: its versions unload.
    assert testing.wait_for(lambda: _states(server, 'B') == {5: 'END'})


def _label_answers(server, label):
  try:
    status, body = _get(server, f'/v1/models/A/labels/{label}/metadata')
  except OSError:
    return None
  return int(__import__('json').loads(body)['model_spec']['version']) \
      if status == 200 else None


def _states(server, name):
  return {s.version: s.state
          for s in RestClient('127.0.0.1', server.rest_port, name).status()}


def test_labels_of_versions_not_loaded_stop_the_start(tmp_path, saved):
  base = str(tmp_path / 'A')
  testing.push_version(saved, base, 1)
  config = _write_config(tmp_path / 'models.config', [
      ('A', base, 'version_labels { key: "stable" value: 1 }')])
  with pytest.raises(UserError, match='not currently available'):
    ModelServer(ServerConfig(model_config_file=config, rest_port=0,
                             grpc_port=0)).start()


# Batching.


def _batching_server(tmp_path, base_path, parameters):
  batching = tmp_path / 'batching.config'
  batching.write_text(parameters)
  return ModelServer(ServerConfig(
      base_path, testing.MODEL_NAME, rest_port=0, grpc_port=0,
      enable_batching=True, batching_parameters_file=str(batching)))


def test_batched_requests_get_their_own_rows_back(tmp_path, base_path):
  in_process = tf.saved_model.load(f'{base_path}/1').signatures[
      'serving_bytes']
  images = [np.array([testing.png(seed=i)] * (i + 1), dtype=object)
            for i in range(6)]
  with _batching_server(tmp_path, base_path,
                        'max_batch_size { value: 8 } batch_timeout_micros '
                        '{ value: 50000 } num_batch_threads { value: 1 } '
                        'enable_large_batch_splitting { value: true } '
                        'max_execution_batch_size { value: 4 }') as server:
    client = GrpcClient('127.0.0.1', server.grpc_port, testing.MODEL_NAME)
    answers = [None] * len(images)

    def send(index):
      answers[index] = client.predict(
          'serving_bytes', {'image_bytes_string': images[index]})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
  for image, answer in zip(images, answers):
    expected = in_process(image_bytes_string=tf.constant(image))
    np.testing.assert_allclose(answer.outputs['probabilities'],
                               expected['probabilities'].numpy(), atol=1e-6)


def test_a_request_larger_than_max_batch_size_fails_as_in_tf_serving(
    tmp_path, base_path):
  with _batching_server(tmp_path, base_path,
                        'max_batch_size { value: 2 }') as server:
    client = RestClient('127.0.0.1', server.rest_port, testing.MODEL_NAME)
    with pytest.raises(RequestFailed,
                       match='Task size 3 is larger than maximum input batch '
                       'size 2'):
      client.predict('serving_bytes',
                     {'image_bytes_string': np.repeat(IMAGE, 3)})


def test_mismatched_shapes_fail_the_batch():
  from imgcls.clients.status import ServingError
  from imgcls.dev_server.batching import BatchingOptions, BatchScheduler
  scheduler = BatchScheduler(BatchingOptions(batch_timeout_s=0.2,
                                             num_batch_threads=1))
  queue = scheduler.queue(lambda inputs: {'y': inputs['x']})
  errors = []

  def run(shape):
    try:
      queue.run({'x': np.zeros(shape, np.float32)})
    except ServingError as e:
      errors.append(e.message)

  threads = [threading.Thread(target=run, args=(s,))
             for s in ((1, 2), (1, 3))]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  scheduler.stop()
  assert len(errors) == 2 and all(
      "Tensors with name 'x' from different tasks have different shapes" in e
      for e in errors)


def test_padding_pads_with_the_first_value_and_allowed_sizes_round_up():
  from imgcls.dev_server.batching import BatchingOptions, BatchScheduler
  seen = []
  scheduler = BatchScheduler(BatchingOptions(
      max_batch_size=4, allowed_batch_sizes=(4,), batch_timeout_s=0.2,
      num_batch_threads=1, pad_variable_length_inputs=True))
  queue = scheduler.queue(lambda inputs: seen.append(inputs['x']) or
                          {'y': inputs['x']})
  outputs = {}
  threads = [threading.Thread(
      target=lambda v=v: outputs.__setitem__(len(v), queue.run(
          {'x': np.array([v], np.float32)}))) for v in ([7.0], [1.0, 2.0])]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  scheduler.stop()
  assert seen[0].shape == (4, 2)  # two requests, padded to the allowed 4
  assert outputs[1]['y'].tolist() == [[7.0, 7.0]]  # padded with its own 7
  assert outputs[2]['y'].tolist() == [[1.0, 2.0]]


# Warm-up.


def _write_warmup(version_dir: str, records) -> None:
  os.makedirs(os.path.dirname(warmup.requests_path(version_dir)),
              exist_ok=True)
  with tf.io.TFRecordWriter(warmup.requests_path(version_dir)) as writer:
    for record in records:
      writer.write(record)


def _warmup_record(signature='serving_bytes', inputs=None):
  log = prediction_log_pb2.PredictionLog()
  request = log.predict_log.request
  request.model_spec.name = testing.MODEL_NAME
  request.model_spec.signature_name = signature
  for key, value in (inputs or {'image_bytes_string': IMAGE}).items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  return log.SerializeToString()


@pytest.mark.parametrize('records, state, message', [
    ([_warmup_record()] * 3, 'AVAILABLE', ''),
    ([_warmup_record(signature='nope')], 'END',
     'Serving signature key "nope" not found.'),
    ([_warmup_record()] * 1001, 'END',
     'Number of warmup records exceeds the maximum (1000)'),
    ([b'not a PredictionLog'], 'END', 'Failed to parse warmup record'),
])
def test_warmup_runs_before_available_and_fails_the_load(
    tmp_path, saved, records, state, message):
  base = str(tmp_path / testing.MODEL_NAME)
  version_dir = testing.push_version(saved, base, 1)
  _write_warmup(version_dir, records)
  with ModelServer(ServerConfig(base, testing.MODEL_NAME, rest_port=0,
                                grpc_port=0)) as server:
    (status,) = RestClient('127.0.0.1', server.rest_port,
                           testing.MODEL_NAME).status()
    assert status.state == state and message in status.error_message


# Hostile clients (issue 19).


def _get(server, path):
  connection = http.client.HTTPConnection('127.0.0.1', server.rest_port,
                                          timeout=30)
  try:
    connection.request('GET', path)
    reply = connection.getresponse()
    return reply.status, reply.read()
  finally:
    connection.close()


@pytest.fixture(scope='module')
def tight_server(base_path):
  with ModelServer(ServerConfig(base_path, testing.MODEL_NAME, rest_port=0,
                                grpc_port=0, rest_api_num_threads=2,
                                header_timeout_s=1.0)) as server:
    yield server


def _raw(server, data: bytes) -> bytes:
  with socket.create_connection(('127.0.0.1', server.rest_port),
                                timeout=10) as s:
    s.sendall(data)
    chunks = []
    while True:
      chunk = s.recv(65536)
      if not chunk:
        return b''.join(chunks)
      chunks.append(chunk)


@pytest.mark.parametrize('data', [
    (b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' + b'\x00' * 40 +
     b'\r\n\r\n'),
    b'garbage\r\n\r\n',
    b'GET /v1/models/x HTTP/9.9\r\n\r\n',
])
def test_malformed_http_gets_a_status_line(tight_server, data):
  reply = _raw(tight_server, data)
  assert reply.startswith(b'HTTP/1.') and b' 400 ' in reply.split(b'\r\n')[0]
  assert b'Traceback' not in reply


def test_slow_headers_do_not_hold_the_workers(tight_server):
  """More slow clients than workers, each trickling header bytes: every one
  is cut off at the header deadline, and a normal request still answers."""
  slow = []
  for _ in range(6):
    s = socket.create_connection(('127.0.0.1', tight_server.rest_port))
    s.sendall(b'GET /v1/models/Lenet HTTP/1.1\r\n')
    slow.append(s)
  started = time.monotonic()
  for _ in range(3):
    time.sleep(0.5)
    for s in slow:
      try:
        s.sendall(b'X-Slow: 1\r\n')
      except OSError:
        pass
  assert _get(tight_server, f'/v1/models/{testing.MODEL_NAME}')[0] == 200
  assert time.monotonic() - started < 15
  for s in slow:
    s.close()


def _rss_bytes(pid: int = None) -> int:
  with open(f'/proc/{pid or os.getpid()}/status') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) * 1024
  raise AssertionError('no VmRSS')


def test_an_image_declaring_huge_dimensions_is_refused_cheaply(tight_server):
  """A PNG that declares 10000x10000 pixels (a few hundred bytes): refused
  from its header, in well under a second, without the memory."""
  bomb = _png_declaring(10000, 10000)
  client = RestClient('127.0.0.1', tight_server.rest_port, testing.MODEL_NAME)
  before = _rss_bytes()
  started = time.monotonic()
  with pytest.raises(RequestFailed, match='--max-decoded-image-bytes'):
    client.predict('serving_bytes', {
        'image_bytes_string': np.array([bomb] * 4, dtype=object)})
  assert time.monotonic() - started < 2
  assert _rss_bytes() - before < 100 << 20


def _png_declaring(width: int, height: int) -> bytes:
  """A valid PNG of width x height black pixels, compressed to little."""
  import struct
  import zlib

  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data)))

  rows = zlib.compress(b'\x00' * (width + 1) * 16, 9)  # a few rows suffice
  return (b'\x89PNG\r\n\x1a\n' +
          chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0,
                                     0)) + chunk(b'IDAT', rows) +
          chunk(b'IEND', b''))
