"""One loaded model version, and running its signatures the way TF Serving does.

A version's signatures are described by the SignatureDefs in its
saved_model.pb, as TF Serving reads them: metadata is answered from them, and
requests are checked against them (input names, dtypes and shapes) before the
SavedModel's functions run. Checking first gives a clear INVALID_ARGUMENT
instead of an error from deep inside the graph. Then the images the inputs
carry are measured against the request's decode budget (image_budget), and
the inputs run, directly or through a batching queue (batching).
"""
import dataclasses
import os
import re
from typing import Dict, Iterable, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from imgcls.clients.status import (
  ServingError,
  code_from_number,
  invalid_argument,
)
from imgcls.contract import storage
from imgcls.dev_server import image_budget
from imgcls.dev_server.batching import BatchScheduler

_SERVE_TAG = 'serve'
# What TensorFlow puts before the message of an error raised inside a graph.
_GRAPH_ERROR_PREAMBLE = re.compile(
    r'^Graph execution error:\s*(Detected at node .*?<stack traces '
    r'unavailable>\s*)?', re.DOTALL)


@dataclasses.dataclass(frozen=True)
class LoadOptions:
  """How a loaded version runs its signatures.

  Attributes:
    batching: the shared scheduler, with --enable_batching; None runs each
      request on its own.
    max_decoded_image_bytes: the decode budget of one request.
  """
  batching: Optional[BatchScheduler] = None
  max_decoded_image_bytes: int = 1 << 30


def dtype_name(dtype: tf.DType) -> str:
  """TensorFlow's own short name for a dtype ('float', 'string', 'int64')."""
  return types_pb2.DataType.Name(dtype.as_datatype_enum)[len('DT_'):].lower()


def _shape_text(shape) -> str:
  return '[' + ','.join('-1' if d is None else str(d) for d in shape) + ']'


class Signature:
  """One SignatureDef of a version, callable with numpy inputs."""

  def __init__(self, name: str, signature_def, function,
               options: LoadOptions):
    self.name = name
    self._function = function
    self._max_decoded_image_bytes = options.max_decoded_image_bytes
    self._queue = (options.batching.queue(self._run_function)
                   if options.batching else None)
    self.input_dtypes = {
        key: tf.as_dtype(info.dtype)
        for key, info in signature_def.inputs.items()
    }
    self._input_shapes = {
        key: tf.TensorShape(info.tensor_shape)
        for key, info in signature_def.inputs.items()
    }
    self.output_names = sorted(signature_def.outputs)

  def run(self, inputs: Dict[str, np.ndarray],
          output_filter: Iterable[str] = ()) -> Dict[str, np.ndarray]:
    """The outputs (all, or those in `output_filter`) for `inputs`.

    Raises:
      ServingError: with the status and message TF Serving would give.
    """
    self._check_input_names(inputs)
    for index, key in enumerate(sorted(inputs)):
      self._check_input(index, key, inputs[key])
    wanted = self._check_output_filter(list(output_filter))
    image_budget.check(inputs.values(), self._max_decoded_image_bytes)
    outputs = (self._queue.run(inputs)
               if self._queue else self._run_function(inputs))
    return {key: outputs[key] for key in wanted}

  def _run_function(self, inputs: Dict[str, np.ndarray]
                   ) -> Dict[str, np.ndarray]:
    tensors = {
        key: tf.constant(value, dtype=self.input_dtypes[key])
        for key, value in inputs.items()
    }
    try:
      outputs = self._function(**tensors)
    except tf.errors.OpError as e:
      raise ServingError(code_from_number(e.error_code),
                         _GRAPH_ERROR_PREAMBLE.sub('', e.message)) from e
    return {key: value.numpy() for key, value in outputs.items()}

  def close(self) -> None:
    """Leaves the batching scheduler (the version was unloaded)."""
    if self._queue:
      self._queue.close()

  def _check_input_names(self, inputs):
    sent, expected = set(inputs), set(self.input_dtypes)
    if len(sent) != len(expected):
      raise invalid_argument(
          f'input size does not match signature: {len(sent)}!={len(expected)}'
          f' len({{{",".join(sorted(sent))}}}) != '
          f'len({{{",".join(sorted(expected))}}}). Sent extra: '
          f'{{{",".join(sorted(sent - expected))}}}. Missing but required: '
          f'{{{",".join(sorted(expected - sent))}}}.')
    unknown = sorted(sent - expected)
    if unknown:
      raise invalid_argument(
          f'input tensor alias not found in signature: {unknown[0]}. Inputs '
          f'expected to be in the set {{{",".join(sorted(expected))}}}.')

  def _check_input(self, index: int, key: str, value: np.ndarray):
    expected = self.input_dtypes[key]
    sent = tf.string if value.dtype.kind in 'OSU' else tf.as_dtype(value.dtype)
    if sent != expected:
      raise invalid_argument(f'Expects arg[{index}] to be '
                             f'{dtype_name(expected)} but {dtype_name(sent)} '
                             f'is provided')
    shape = self._input_shapes[key]
    if not shape.is_compatible_with(value.shape):
      raise invalid_argument(
          f'input {key} has shape {_shape_text(value.shape)}, but signature '
          f'{self.name} expects {_shape_text(shape.as_list())} (-1: any size)')

  def _check_output_filter(self, output_filter):
    for index, key in enumerate(output_filter):
      if key not in self.output_names:
        raise invalid_argument(
            f'output tensor alias not found in signature: {key} Outputs '
            f'expected to be in the set {{{",".join(self.output_names)}}}.')
      if key in output_filter[:index]:
        raise invalid_argument(f'duplicate output tensor alias: {key}')
    return output_filter or self.output_names


class Servable:
  """A loaded version: its signature defs and callable signatures."""

  def __init__(self, version: int, signature_defs, loaded,
               options: LoadOptions = LoadOptions()):
    self.version = version
    self.signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in signature_defs.items():
      self.signature_def_map.signature_def[name].CopyFrom(signature_def)
    # Keeps the loaded object (and so its variables) alive with the servable.
    self._loaded = loaded
    self._signatures = {
        name: Signature(name, signature_defs[name], function, options)
        for name, function in loaded.signatures.items()
        if name in signature_defs
    }

  @classmethod
  def load(cls, path: str, version: int,
           options: LoadOptions = LoadOptions()) -> 'Servable':
    """Loads the SavedModel at `path` fully; raises on any problem."""
    signature_defs = _serving_signature_defs(path)
    return cls(version, signature_defs, tf.saved_model.load(path), options)

  def close(self) -> None:
    for signature in self._signatures.values():
      signature.close()

  def signature(self, name: str) -> Optional[Signature]:
    return self._signatures.get(name)


def _serving_signature_defs(path: str):
  """The signature defs of the 'serve' meta graph, which TF Serving loads."""
  saved_model = saved_model_pb2.SavedModel.FromString(
      storage.read_bytes(os.path.join(path, 'saved_model.pb')))
  for meta_graph in saved_model.meta_graphs:
    if _SERVE_TAG in meta_graph.meta_info_def.tags:
      return meta_graph.signature_def
  raise ServingError(grpc.StatusCode.NOT_FOUND,
                     f'{path}: no meta graph tagged "{_SERVE_TAG}"')
