"""The warm-up file of a version: requests TF Serving replays as it loads it.

TF Serving reads `assets.extra/tf_serving_warmup_requests` when it loads a
version and runs every record through the model before the version is
AVAILABLE, so lazy initialisation (graph optimisation, the first allocation
of each batch shape) is paid then, not by the first client. The file is an
uncompressed TFRecord file of `PredictionLog`s; a `predict_log.request` is
run as a Predict call (only its signature name counts, not the model name),
and more than 1,000 records fail the load (tensorflow_serving/servables/
tensorflow/saved_model_warmup.cc, saved_model_warmup_util.cc). TFX's
InfraValidator writes the same format (tfx/components/infra_validator/
executor.py, _CreateWarmupModel).
"""
import os
from typing import List, Sequence

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from imgcls.contract import names, storage


def path_in(version_dir: str) -> str:
  return os.path.join(version_dir, names.WARMUP_REQUESTS_FILE)


def write_requests(version_dir: str,
                   requests: Sequence[predict_pb2.PredictRequest]) -> None:
  """Writes the requests as the version's warm-up file."""
  if len(requests) > names.MAX_WARMUP_RECORDS:
    raise ValueError(f'{len(requests)} warm-up requests; TF Serving refuses '
                     f'more than {names.MAX_WARMUP_RECORDS}')
  storage.makedirs(os.path.dirname(path_in(version_dir)))
  with tf.io.TFRecordWriter(path_in(version_dir)) as writer:
    for request in requests:
      writer.write(prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(
              request=request)).SerializeToString())


def images_in(version_dir: str) -> List[bytes]:
  """The encoded images of the version's largest serving_bytes warm-up
  request: test images the Pusher picked, kept in the version itself, for a
  check that has no Examples at hand (`imgcls verify-push`). [] without a
  warm-up file."""
  if not storage.exists(path_in(version_dir)):
    return []
  found, records = [], tf.data.TFRecordDataset(path_in(version_dir))
  for record in records.as_numpy_iterator():
    request = prediction_log_pb2.PredictionLog.FromString(
        record).predict_log.request
    if (request.model_spec.signature_name == names.SERVING_BYTES and
        names.BYTES_INPUT in request.inputs):
      images = list(tf.make_ndarray(request.inputs[names.BYTES_INPUT]).ravel())
      found = max(found, images, key=len)
  return found
