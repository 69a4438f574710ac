"""TF Serving's gRPC API (port 8500): PredictionService and ModelService.

Implemented: Predict, GetModelMetadata and GetModelStatus. Classify, Regress,
MultiInference and HandleReloadConfigRequest answer UNIMPLEMENTED (the
generated base classes do that). Predict is counted in the metrics as
prediction_service_impl.cc counts it (API "Predict", entrypoint GRPC).
"""
import contextlib
import time
from typing import Optional, Tuple

import grpc
from tensorflow_serving.apis import (
  model_service_pb2_grpc,
  prediction_service_pb2_grpc,
)

from imgcls.clients.status import ServingError, invalid_argument
from imgcls.dev_server.core import ServingCore
from imgcls.dev_server.metrics import Metrics
from imgcls.dev_server.predict import run_predict


@contextlib.contextmanager
def _status_on_error(context: grpc.ServicerContext):
  try:
    yield
  except ServingError as e:
    context.abort(e.code, e.message)


def _spec_fields(request) -> Tuple[str, Optional[int], Optional[str]]:
  """(name, version, label) of a request's ModelSpec."""
  if not request.HasField('model_spec'):
    raise invalid_argument('Missing ModelSpec')
  spec = request.model_spec
  version = spec.version.value if spec.HasField('version') else None
  label = spec.version_label if spec.HasField('version_label') else None
  return spec.name, version, label


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata."""

  def __init__(self, core: ServingCore, metrics: Metrics):
    self._core = core
    self._metrics = metrics

  def Predict(self, request, context):
    started = time.monotonic()
    code = grpc.StatusCode.OK
    try:
      with _status_on_error(context):
        try:
          servable = self._core.servable(*_spec_fields(request))
          return run_predict(servable, request, request.model_spec.name)
        except ServingError as e:
          code = e.code
          raise
    finally:
      self._metrics.record_request(request.model_spec.name, 'Predict', 'GRPC',
                                   code, time.monotonic() - started)

  def GetModelMetadata(self, request, context):
    with _status_on_error(context):
      return self._core.model_metadata(*_spec_fields(request),
                                       fields=list(request.metadata_field))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """GetModelStatus."""

  def __init__(self, core: ServingCore):
    self._core = core

  def GetModelStatus(self, request, context):
    with _status_on_error(context):
      return self._core.model_status(*_spec_fields(request))


def add_services(server: grpc.Server, core: ServingCore,
                 metrics: Metrics) -> None:
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionServicer(core, metrics), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      ModelServicer(core), server)
