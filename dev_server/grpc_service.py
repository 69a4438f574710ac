"""TF Serving's gRPC API (port 8500): PredictionService and ModelService.

Implemented: Predict, GetModelMetadata and GetModelStatus. Classify, Regress,
MultiInference and HandleReloadConfigRequest answer UNIMPLEMENTED (the
generated base classes do that).
"""
import contextlib
from typing import Optional, Tuple

import grpc
import tensorflow as tf
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from dev_server.core import ServingCore
from contract.names import SERVING_DEFAULT
from clients.status import ServingError, invalid_argument


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


def _ndarray(alias: str, tensor_proto):
  try:
    return tf.make_ndarray(tensor_proto)
  except Exception:  # pylint: disable=broad-except  (malformed protos vary)
    raise invalid_argument(f'tensor parsing error: {alias}') from None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata."""

  def __init__(self, core: ServingCore):
    self._core = core

  def Predict(self, request, context):  # pylint: disable=invalid-name
    with _status_on_error(context):
      servable = self._core.servable(*_spec_fields(request))
      signature_name = request.model_spec.signature_name or SERVING_DEFAULT
      signature = servable.signature(signature_name)
      if signature is None:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f'Serving signature key "{signature_name}" not '
                           f'found.')
      inputs = {
          alias: _ndarray(alias, tensor)
          for alias, tensor in request.inputs.items()
      }
      outputs = signature.run(inputs, request.output_filter)
      response = predict_pb2.PredictResponse(
          model_spec=self._core.served_spec(servable, signature_name))
      for alias, value in outputs.items():
        response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
      return response

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    with _status_on_error(context):
      return self._core.model_metadata(*_spec_fields(request),
                                       fields=list(request.metadata_field))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """GetModelStatus."""

  def __init__(self, core: ServingCore):
    self._core = core

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    with _status_on_error(context):
      return self._core.model_status(*_spec_fields(request))


def add_services(server: grpc.Server, core: ServingCore) -> None:
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionServicer(core), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      ModelServicer(core), server)
