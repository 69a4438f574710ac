"""TF Serving's JSON predict format: request bodies to arrays, outputs to JSON.

The rules and error messages follow TF Serving's `util/json_tensor.cc`:
- "instances" (row format) stacks one value per instance along a new first
  dimension; with several inputs, each instance is an object keyed by input
  name. "inputs" (columnar) gives whole tensors, by name when there are
  several. Exactly one of the two keys must be present.
- Values must be dense (every list at a level the same length) and of the
  signature's dtype; DT_STRING values are text, or {"b64": ...} for binary
  data, decoded as absl's Base64Unescape decodes it.
- Bodies are parsed as rapidjson parses them (dev_server.json_parse).
- Replies are "predictions" (row) or "outputs" (columnar); one output drops
  its name; string outputs are base64 objects only if the name ends `_bytes`.
"""
import base64
import binascii
import re
from typing import Dict, List, Tuple

import grpc
import numpy as np
import tensorflow as tf

from imgcls.clients.status import ServingError, invalid_argument
from imgcls.contract.names import SERVING_DEFAULT
from imgcls.dev_server import json_parse
from imgcls.dev_server.servable import dtype_name

_B64 = 'b64'
_BYTES_SUFFIX = '_bytes'
# Deeper nesting than any tensor needs; bounds the recursion below.
_MAX_RANK = 64
# What absl's Base64Unescape skips: whitespace anywhere (line breaks).
_B64_WHITESPACE = re.compile(rb'[ \t\n\r\f\v]+')
# numpy kinds that a JSON list of numbers may parse to, per target dtype kind.
_ACCEPTED_KINDS = {'b': 'b', 'i': 'iu', 'u': 'iu', 'f': 'iuf'}


def parse_body(body: bytes) -> dict:
  """The JSON object of a request body (its first JSON value)."""
  document = json_parse.parse(body)
  if not isinstance(document, dict):
    raise invalid_argument(f'JSON Value: {_show(document)} Is not object')
  return document


def signature_name(document: dict) -> str:
  name = document.get('signature_name', '')
  if not isinstance(name, str):
    raise invalid_argument(
        f"JSON Value: {_show(document)} not formatted correctly. "
        f"'signature_name' key must be a string value.")
  return name or SERVING_DEFAULT  # TF Serving's default


def request_inputs(document: dict, input_dtypes: Dict[str, tf.DType]
                  ) -> Tuple[Dict[str, np.ndarray], bool]:
  """(inputs by name, whether the request used the row format)."""
  has_rows, has_columns = 'instances' in document, 'inputs' in document
  if has_rows and has_columns:
    raise invalid_argument(
        f"JSON Value: {_show(document)} Not formatted correctly expecting "
        f"only one of 'inputs' or 'instances' keys to exist ")
  if has_rows:
    return _inputs_from_instances(document, input_dtypes), True
  if has_columns:
    return _inputs_from_columns(document['inputs'], input_dtypes), False
  raise invalid_argument("Missing 'inputs' or 'instances' key")


def response(outputs: Dict[str, np.ndarray], row_format: bool) -> dict:
  """The JSON reply to a predict request."""
  if row_format:
    return {'predictions': _rows(outputs)}
  values = {name: _json_values(name, value) for name, value in outputs.items()}
  return {'outputs': _sole_or_all(values)}


def _sole_or_all(values: dict):
  return next(iter(values.values())) if len(values) == 1 else values


# Requests.


def _inputs_from_instances(document, input_dtypes):
  instances = document['instances']
  if not isinstance(instances, list):
    raise invalid_argument(f"JSON Value: {_show(document)} Expecting "
                           f"'instances' to be an list/array")
  if not instances:
    raise invalid_argument(
        f"JSON Value: {_show(document)} No values in 'instances' array")
  named = _is_named(instances[0])
  if not named and len(input_dtypes) > 1:
    raise invalid_argument(
        'instances is a plain list, but expecting list of objects as '
        'multiple input tensors required as per tensorinfo_map')
  rows: Dict[str, List[np.ndarray]] = {name: [] for name in input_dtypes}
  for index, instance in enumerate(instances):
    if named and not _is_named(instance):
      raise invalid_argument(
          f'Expecting object but got list at item {index} of input list')
    if not named and _is_named(instance):
      raise invalid_argument(
          f'Expecting value/list but got object at item {index} of input list')
    items = instance if named else {next(iter(input_dtypes)): instance}
    for name, value in items.items():
      where = f'element: {index} key: {name}' if named else f'element: {index}'
      array = _instance_item(where, name, value, input_dtypes, rows.get(name))
      rows[name].append(array)
    if named and set(instance) != set(input_dtypes):
      raise invalid_argument(
          f"Failed to process element: {index} of 'instances' list. JSON "
          f"object: {_show(instance)} keys must be equal to: "
          f"{','.join(sorted(input_dtypes))}")
  return {name: np.stack(values) for name, values in rows.items()}


def _instance_item(where, name, value, input_dtypes, previous):
  """One instance's value of input `name`, the same shape as the previous."""
  try:
    if name not in input_dtypes:
      raise invalid_argument(
          f'JSON object: does not have named input: {name}')
    array = _to_array(value, input_dtypes[name])
    if previous and previous[0].size != array.size:
      raise invalid_argument(
          f'Expecting tensor size: {previous[0].size} but got: {array.size}')
    if previous and previous[0].shape != array.shape:
      raise invalid_argument(f'Expecting shape {_shape(previous[0].shape)} '
                             f'but got: {_shape(array.shape)}')
  except ServingError as e:
    raise invalid_argument(f"Failed to process {where} of 'instances' list. "
                           f"Error: {e}") from None
  return array


def _inputs_from_columns(value, input_dtypes):
  if not isinstance(value, dict) or _is_b64(value):
    if len(input_dtypes) > 1:
      raise invalid_argument(
          'inputs is a plain value/list, but expecting an object as multiple '
          'input tensors required as per tensorinfo_map')
    name, dtype = next(iter(input_dtypes.items()))
    return {name: _to_array(value, dtype)}
  for name in sorted(input_dtypes):
    if name not in value:
      raise invalid_argument(f"Missing named input: {name} in 'inputs' "
                             f"object.")
  return {
      name: _to_array(value[name], dtype)
      for name, dtype in input_dtypes.items()
  }


def _is_b64(value) -> bool:
  return (isinstance(value, dict) and len(value) == 1 and
          isinstance(value.get(_B64), str))


def _is_named(value) -> bool:
  return isinstance(value, dict) and not _is_b64(value)


def _dense_shape(value) -> List[int]:
  """The shape implied by the first element at each level (TF Serving's)."""
  shape = []
  while isinstance(value, list):
    shape.append(len(value))
    if len(shape) > _MAX_RANK:
      raise invalid_argument(f'JSON value nested deeper than {_MAX_RANK} '
                             f'levels')
    value = value[0] if value else None
  return shape


def _to_array(value, dtype: tf.DType) -> np.ndarray:
  """One dense tensor of `dtype` from a JSON value."""
  shape = _dense_shape(value)
  array = _numeric_fast_path(value, shape, dtype)
  if array is not None:
    return array
  flat = []
  _fill(value, 0, shape, dtype, flat)
  numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
  return np.array(flat, dtype=numpy_dtype).reshape(shape)


def _numeric_fast_path(value, shape, dtype):
  """numpy's parse of a dense numeric value, or None to check value by value.

  Walking every number in Python is slow for image-sized inputs; numpy parses
  them at C speed. Anything it cannot take whole (text, objects, ragged lists,
  values out of range) goes the slow way, which gives TF Serving's errors.
  """
  if dtype == tf.string or not (dtype.is_floating or dtype.is_integer or
                                dtype.is_bool):
    return None
  try:
    parsed = np.array(value)
  except (ValueError, OverflowError):
    return None
  numpy_dtype = np.dtype(dtype.as_numpy_dtype)
  if (list(parsed.shape) != shape or
      parsed.dtype.kind not in _ACCEPTED_KINDS.get(numpy_dtype.kind, '')):
    return None
  with np.errstate(over='ignore', invalid='ignore'):
    converted = parsed.astype(numpy_dtype)
  # Floats round (GetFloat); integers must fit their dtype exactly.
  if numpy_dtype.kind == 'f' or np.array_equal(converted, parsed):
    return converted
  return None


def _fill(value, level, shape, dtype, flat):
  if not isinstance(value, list):
    if level != len(shape):
      raise invalid_argument(
          f'JSON Value: {_show(value)} found at incorrect level: {level + 1} '
          f'in the JSON DOM. Expected at level: {len(shape)}')
    flat.append(_scalar(value, dtype))
    return
  if level >= len(shape):
    raise invalid_argument(f'Encountered list at unexpected level: {level} '
                           f'expected < {len(shape)}')
  if len(value) != shape[level]:
    raise invalid_argument(
        f'Encountered list at unexpected size: {len(value)} at level: '
        f'{level} expected size: {shape[level]}')
  for item in value:
    _fill(item, level + 1, shape, dtype, flat)


def _scalar(value, dtype: tf.DType):
  """One JSON scalar as a value of `dtype`."""
  if dtype == tf.string:
    if isinstance(value, str):
      return value.encode('utf-8', 'surrogateescape')
    if isinstance(value, dict):
      return _decode_b64(value)
    raise _type_error(value, dtype)
  is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
  if dtype.is_bool:
    if not isinstance(value, bool):
      raise _type_error(value, dtype)
    return value
  if dtype.is_integer:
    if not (is_number and isinstance(value, int)):
      raise _type_error(value, dtype)
    if not dtype.min <= value <= dtype.max:
      raise _type_error(value, dtype)
    return value
  if dtype.is_floating:
    # Any number, rounded to the dtype (GetFloat): 1e39 is inf in a float.
    if not is_number:
      raise _type_error(value, dtype)
    return value
  raise ServingError(
      grpc.StatusCode.UNIMPLEMENTED,
      f'Conversion of JSON Value: {_show(value)} to type: {dtype_name(dtype)}')


def _decode_b64(value) -> bytes:
  if not _is_b64(value):
    raise invalid_argument(f'JSON Value: {_show(value)} not formatted '
                           f'correctly for base64 data')
  return decode_base64(value[_B64])


def decode_base64(text: str) -> bytes:
  """absl's Base64Unescape: the standard alphabet only (URL-safe '-' and '_'
  fail), whitespace skipped, '=' padding optional."""
  data = _B64_WHITESPACE.sub(b'', text.encode('utf-8', 'surrogateescape'))
  try:
    unpadded = data.rstrip(b'=')
    if len(data) - len(unpadded) > 2 or len(unpadded) % 4 == 1:
      raise ValueError('bad length')
    return base64.b64decode(unpadded + b'=' * (-len(unpadded) % 4),
                            validate=True)
  except (binascii.Error, ValueError):
    raise invalid_argument('Unable to base64 decode') from None


def _type_error(value, dtype) -> ServingError:
  return invalid_argument(
      f'JSON Value: {_show(value)} Type: {_json_type(value)} is not of '
      f'expected type: {dtype_name(dtype)}')


def _json_type(value) -> str:
  if value is None:
    return 'Null'
  if isinstance(value, bool):
    return str(value)
  return {dict: 'Object', list: 'Array', str: 'String'}.get(type(value),
                                                            'Number')


def _show(value) -> str:
  return json_parse.debug_string(value)


def _shape(shape) -> str:
  return '[' + ','.join(str(d) for d in shape) + ']'


# Replies.


def _rows(outputs: Dict[str, np.ndarray]) -> list:
  batch_size = None
  for name, value in outputs.items():
    if value.ndim == 0:
      raise invalid_argument(f'Tensor name: {name} has no shape information ')
    if batch_size is not None and value.shape[0] != batch_size:
      raise invalid_argument(
          f'Tensor name: {name} has inconsistent batch size: '
          f'{value.shape[0]} expecting: {batch_size}')
    batch_size = value.shape[0]
  return [
      _sole_or_all({
          # A one-row slice keeps the array type that _json_values needs.
          name: _json_values(name, value[index:index + 1])[0]
          for name, value in outputs.items()
      }) for index in range(batch_size)
  ]


def _json_values(name: str, value: np.ndarray):
  """An array as nested JSON lists; strings as text or base64 objects."""
  if value.dtype.kind not in 'OS':
    return value.tolist()
  as_b64 = name.endswith(_BYTES_SUFFIX)
  return _map_leaves(value.tolist(), lambda b: _json_string(b, as_b64))


def _json_string(value: bytes, as_b64: bool):
  if as_b64:
    return {_B64: base64.b64encode(value).decode('ascii')}
  return value.decode('utf-8', errors='replace')


def _map_leaves(value, function):
  if isinstance(value, list):
    return [_map_leaves(item, function) for item in value]
  return function(value)
