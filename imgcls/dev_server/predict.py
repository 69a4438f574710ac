"""PredictionService.Predict on a loaded version, from a PredictRequest proto.

Shared by the gRPC front end and warm-up replay, as TF Serving shares
RunPredict (servables/tensorflow/predict_util.cc) between them.
"""
import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from imgcls.clients.status import ServingError, invalid_argument
from imgcls.contract.names import SERVING_DEFAULT
from imgcls.dev_server.core import served_spec
from imgcls.dev_server.servable import Servable


def _ndarray(alias: str, tensor_proto):
  try:
    return tf.make_ndarray(tensor_proto)
  except Exception:  # malformed protos vary
    raise invalid_argument(f'tensor parsing error: {alias}') from None


def run_predict(servable: Servable, request: predict_pb2.PredictRequest,
                model_name: str) -> predict_pb2.PredictResponse:
  """The response to `request`, answered by `servable`."""
  signature_name = request.model_spec.signature_name or SERVING_DEFAULT
  signature = servable.signature(signature_name)
  if signature is None:
    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                       f'Serving signature key "{signature_name}" not found.')
  inputs = {
      alias: _ndarray(alias, tensor)
      for alias, tensor in request.inputs.items()
  }
  outputs = signature.run(inputs, request.output_filter)
  response = predict_pb2.PredictResponse(
      model_spec=served_spec(model_name, servable, signature_name))
  for alias, value in outputs.items():
    response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
  return response
