"""TF Serving's JSON predict format, without a server."""
import json

import numpy as np
import pytest
import tensorflow as tf

from imgcls.clients.status import ServingError
from imgcls.dev_server import json_tensors

TWO_INPUTS = {'image': tf.string, 'scale': tf.float32}


def _inputs(document, input_dtypes=None):
  return json_tensors.request_inputs(document, input_dtypes or TWO_INPUTS)


def test_row_format_with_several_inputs_stacks_each_by_name():
  inputs, row_format = _inputs({
      'instances': [{
          'image': {
              'b64': 'aGk='
          },
          'scale': [1, 2]
      }, {
          'image': 'text',
          'scale': [3.5, 4]
      }]
  })
  assert row_format
  assert inputs['image'].tolist() == [b'hi', b'text']
  assert inputs['scale'].dtype == np.float32
  assert inputs['scale'].tolist() == [[1, 2], [3.5, 4]]


def test_columnar_format_takes_named_tensors_whole():
  inputs, row_format = _inputs({
      'inputs': {
          'image': [{'b64': 'aGk='}],
          'scale': 2.0
      }
  })
  assert not row_format
  assert inputs['scale'].shape == () and inputs['image'].shape == (1,)


@pytest.mark.parametrize('document, message', [
    ({'instances': [[1.0]]}, 'instances is a plain list, but expecting list'),
    ({'instances': [{'image': 'a', 'scale': 1}, ['b']]},
     'Expecting object but got list at item 1'),
    ({'instances': [{'image': 'a'}]}, 'keys must be equal to: image,scale'),
    ({'instances': [{'image': 'a', 'scale': 1, 'x': 2}]},
     'does not have named input: x'),
    ({'instances': [{'image': 'a', 'scale': True}]},
     'JSON Value: true Type: True is not of expected type: float'),
    ({'instances': [{'image': {'b64': 'aGk=', 'x': 1}, 'scale': 1}]},
     'not formatted correctly for base64 data'),
    ({'instances': [{'image': 'a', 'scale': [1, 2]},
                    {'image': 'b', 'scale': [1]}]},
     'Expecting tensor size: 2 but got: 1'),
    ({'instances': [{'image': 'a', 'scale': [1]},
                    {'image': 'b', 'scale': 1}]},
     'Expecting shape [1] but got: []'),
    ({'inputs': [1.0]},
     'inputs is a plain value/list, but expecting an object'),
    ({'inputs': {'image': 'a'}}, "Missing named input: scale in 'inputs'"),
    ({'instances': {}}, "Expecting 'instances' to be an list/array"),
    ({'instances': []}, "No values in 'instances' array"),
])
def test_malformed_requests_get_tf_servings_messages(document, message):
  with pytest.raises(ServingError) as raised:
    _inputs(document)
  assert raised.value.http_status == 400
  assert message in raised.value.message


def test_integer_inputs_take_integers_only():
  dtypes = {'ids': tf.int32}
  assert _inputs({'inputs': [[1, 2]]}, dtypes)[0]['ids'].dtype == np.int32
  for bad in ([1.5], [2**31]):
    with pytest.raises(ServingError, match='is not of expected type: int32'):
      _inputs({'inputs': bad}, dtypes)


def test_floats_round_as_getfloat_does():
  # json_tensor_test.cc: FloatTensorWithPrecisionLoss,
  # FloatTensorThatExceedsMaxReturnsInf, FloatTensorThatExceedsMinReturnsZero.
  inputs, _ = _inputs({'instances': [16777217, 1e39, -1e39, 1e-50]},
                      {'x': tf.float32})
  assert inputs['x'].tolist() == [16777216.0, np.inf, -np.inf, 0.0]


def test_tensors_nested_deeper_than_any_rank_are_a_clean_error():
  with pytest.raises(ServingError, match='nested deeper'):
    _inputs({'inputs': json.loads('[' * 100 + ']' * 100)}, {'x': tf.float32})


def test_replies_drop_a_sole_outputs_name_and_b64_only_bytes_outputs():
  one = {'scores': np.array([[0.5], [1.5]], np.float32)}
  assert json_tensors.response(one, row_format=True) == {
      'predictions': [[0.5], [1.5]]
  }
  assert json_tensors.response(one, row_format=False) == {
      'outputs': [[0.5], [1.5]]
  }
  two = {
      'label': np.array([b'cat', b'dog'], dtype=object),
      'thumb_bytes': np.array([b'\xff', b'\x00'], dtype=object),
  }
  assert json_tensors.response(two, row_format=True) == {
      'predictions': [{
          'label': 'cat',
          'thumb_bytes': {'b64': '/w=='}
      }, {
          'label': 'dog',
          'thumb_bytes': {'b64': 'AA=='}
      }]
  }


def test_row_replies_need_one_batch_size():
  with pytest.raises(ServingError, match='inconsistent batch size'):
    json_tensors.response({
        'a': np.zeros([2]),
        'b': np.zeros([3])
    }, row_format=True)
