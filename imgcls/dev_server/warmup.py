"""Warm-up: a version replays its recorded requests before it is AVAILABLE.

As servables/tensorflow/saved_model_warmup_util.cc does it:
- the file is `assets.extra/tf_serving_warmup_requests` in the version's
  directory; without it there is nothing to do;
- it holds TFRecords of PredictionLog; each record runs
  `--num_request_iterations_for_warmup` times (default 1);
- more than 1,000 records, a record that is not a PredictionLog, a file that
  is not TFRecords, or a request that fails, fail the load;
- predict_log records are replayed (saved_model_warmup.cc); classify,
  regress and multi-inference logs fail it here, as this server does not
  implement those APIs; session_run and predict_streamed logs fail it there
  too ("Unsupported log_type for warmup").
"""
import logging
import os
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from imgcls.clients.status import ServingError, invalid_argument
from imgcls.contract import names, storage
from imgcls.dev_server.metrics import Metrics
from imgcls.dev_server.predict import run_predict
from imgcls.dev_server.servable import Servable

_NOT_REPLAYED_HERE = ('classify_log', 'regress_log', 'multi_inference_log')

_log = logging.getLogger(__name__)


def requests_path(version_dir: str) -> str:
  return os.path.join(version_dir, names.WARMUP_REQUESTS_FILE)


def replay(version_dir: str, servable: Servable, model_name: str,
           iterations: int, metrics: Metrics) -> None:
  """Runs the warm-up requests of `version_dir` on `servable`.

  Raises:
    ServingError: with TF Serving's status and message, failing the load.
  """
  path = requests_path(version_dir)
  if not storage.exists(path):
    return
  started = time.monotonic()
  status = 'OK'
  try:
    count = _replay_records(path, servable, model_name, max(1, iterations))
  except ServingError as e:
    status = f'{e.code.name}: {e.message}'
    raise
  finally:
    metrics.record_warmup(version_dir, status, time.monotonic() - started)
  _log.info('Finished reading warmup data for model at %s. Number of warmup '
            'records read: %d.', path, count)


def _replay_records(path, servable, model_name, iterations) -> int:
  count = 0
  try:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      log = _prediction_log(record, path)
      for _ in range(iterations):
        _run(log, servable, model_name)
      count += 1
      if count > names.MAX_WARMUP_RECORDS:
        raise invalid_argument(
            'Number of warmup records exceeds the maximum '
            f'({names.MAX_WARMUP_RECORDS}) at {path}')
  except tf.errors.DataLossError as e:
    raise ServingError(
        grpc.StatusCode.DATA_LOSS,
        f'{e.message}. Please verify your warmup data is in TFRecord '
        f'format.') from e
  return count


def _prediction_log(record: bytes, path: str):
  try:
    return prediction_log_pb2.PredictionLog.FromString(record)
  except Exception:  # DecodeError and kin
    raise invalid_argument(f'Failed to parse warmup record: {record!r} from '
                           f'{path}') from None


def _run(log, servable: Servable, model_name: str) -> None:
  kind = log.WhichOneof('log_type')
  if kind == 'predict_log':
    run_predict(servable, log.predict_log.request, model_name)
  elif kind in _NOT_REPLAYED_HERE:
    raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f'{kind} warm-up records need an API this development server does '
        f'not implement')
  elif kind is not None:
    number = log.DESCRIPTOR.fields_by_name[kind].number
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                       f'Unsupported log_type for warmup: {number}')
