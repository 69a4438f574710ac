"""TF Serving's batching rule, applied to the real exported SavedModel.

With --enable_batching, TF Serving's BatchingSession queues the requests to a
signature, concatenates their inputs along dimension 0, runs the signature
once, and splits the outputs back by each request's size. A request that
succeeds alone can still fail in a batch: when any other dimension of its
inputs differs from the first request's, the whole batch fails. The design
(docs/serving.md, "Batching") makes that impossible: every input of every
signature has no free dimension but the batch.

The rule is the development server's port of it (imgcls/dev_server/
batching.py: input_size, merge_inputs, split_outputs, split_sizes and
split_inputs, from tensorflow_serving/batching/batching_session.cc and
batching_util.cc), with its error texts and status codes. Below it is checked
against upstream's own cases (batching_session_test.cc); then, for every
signature of a pushed model, two requests that each succeed alone are merged
as BatchingSession would merge them, run, split, and compared with their solo
answers: they differ in batch size, image size, colour mode and contents. A
request larger than a batch, split into parts that share batches with another
request, gets its solo answer too.
"""
import io
from typing import Dict, List, Sequence

import grpc
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from imgcls.clients.status import ServingError
from imgcls.contract import names
from imgcls.dev_server import batching

Inputs = Dict[str, np.ndarray]


def _merge(tasks: List[Inputs], allowed_batch_sizes: Sequence[int] = ()
          ) -> Inputs:
  """MergeInputTensors as this project serves: pad_variable_length_inputs
  off, padded up to the next allowed batch size."""
  size = sum(batching.input_size(task) for task in tasks)
  options = batching.BatchingOptions(
      allowed_batch_sizes=tuple(allowed_batch_sizes))
  return batching.merge_inputs(tasks, options.padded_size(size))


def _split(outputs: Inputs, sizes: Sequence[int], padding: int = 0
          ) -> List[Inputs]:
  return batching.split_outputs(outputs, sizes, sum(sizes) + padding)


def _split_task(task: Inputs, open_batch_remaining_slot: int,
                max_execution_batch_size: int) -> List[Inputs]:
  """SplitInputTask (enable_large_batch_splitting)."""
  sizes = batching.split_sizes(batching.input_size(task),
                               open_batch_remaining_slot,
                               max_execution_batch_size)
  return batching.split_inputs(task, sizes)


# --- The port against upstream's cases (batching_session_test.cc) -----------


def _half_plus_two(inputs: Inputs) -> Inputs:
  return {'y': inputs['x'] / 2 + 2}


def test_upstream_unequal_tensor_shapes_with_padding_turned_off():
  tasks = [{'x': np.array([1, 2, 3, 4], np.float32).reshape(1, 2, 2)},
           {'x': np.arange(5, 14, dtype=np.float32).reshape(1, 3, 3)}]
  with pytest.raises(ServingError) as error:
    _merge(tasks)
  assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
  assert error.value.message == (
      "Tensors with name 'x' from different tasks have different shapes and "
      'padding is turned off. Set pad_variable_length_inputs to true, or '
      'ensure that all tensors with the same name have equal dimensions '
      'starting with the first dim.')


def test_upstream_request_with_incompatible_input_tensor_sizes():
  with pytest.raises(ServingError, match='must have equal 0th-dimension'):
    batching.input_size({'input_0': np.array([3]),
                         'input_1': np.array([5, 7])})


def test_upstream_basic_and_allowed_batch_sizes_require_padding():
  # Basic: two requests of one value each, batched and split back.
  tasks = [{'x': np.array([100.0], np.float32)},
           {'x': np.array([42.0], np.float32)}]
  merged = _merge(tasks)
  answers = _split(_half_plus_two(merged), [1, 1])
  assert [a['y'].tolist() for a in answers] == [[52.0], [23.0]]
  # allowed_batch_sizes {1, 3, 4}: a batch of 2 is padded to 3.
  tasks = [{'x': np.array([100.0, 42.0], np.float32)}]
  merged = _merge(tasks, allowed_batch_sizes=[1, 3, 4])
  assert merged['x'].shape == (3,)
  (answer,) = _split(_half_plus_two(merged), [2], padding=1)
  assert answer['y'].tolist() == [52.0, 23.0]


def test_upstream_batching_with_large_batch():
  """A task larger than the execution batch is split, and its parts'
  outputs are concatenated back (BatchingWithLargeBatch)."""
  task = {'x': np.arange(5, dtype=np.float32)}
  parts = _split_task(task, open_batch_remaining_slot=1,
                      max_execution_batch_size=2)
  assert [len(p['x']) for p in parts] == [1, 2, 2]
  outputs = [_half_plus_two(p)['y'] for p in parts]
  assert np.concatenate(outputs).tolist() == (task['x'] / 2 + 2).tolist()


# --- The rule on the exported model -----------------------------------------


@pytest.fixture(scope='module')
def signatures(base_path):
  """The signatures of version 1 as pushed (tests/conftest.py: a LenetModel
  saved by its own `save`, published the Pusher's way), loaded as TF
  Serving loads it."""
  return tf.saved_model.load(f'{base_path}/1').signatures


def _input_names(signature) -> List[str]:
  return sorted(signature.structured_input_signature[1])


def _run(signature, inputs: Inputs) -> Inputs:
  outputs = signature(**{k: tf.constant(v) for k, v in inputs.items()})
  return {k: v.numpy() for k, v in outputs.items()}


def _png(width, height, mode, seed) -> bytes:
  rng = np.random.default_rng(seed)
  shape = (height, width) + ((3,) if mode == 'RGB' else ())
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8),
                  mode).save(buffer, format='PNG')
  return buffer.getvalue()


def _example(encoded: bytes) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      names.IMAGE_KEY: tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[encoded]))
  })).SerializeToString()


def _two_requests(signature_name, signature) -> List[Inputs]:
  """Two requests that differ in every way a client may vary them (batch
  size, image size and mode, contents), each valid alone."""
  (input_name,) = _input_names(signature)
  if signature_name == names.SERVING_DEFAULT:
    # Pixels at the model's own input shape, as clients resize them.
    spec = signature.structured_input_signature[1][input_name]
    shape = tuple(spec.shape[1:])
    rng = np.random.default_rng(0)
    return [{input_name: rng.uniform(0, 255, (n,) + shape).astype(np.float32)}
            for n in (1, 3)]
  first = [_png(28, 28, 'L', seed=1)]
  second = [_png(40, 32, 'RGB', seed=2), _png(17, 50, 'L', seed=3)]
  if signature_name == names.SERVING_EXAMPLES:
    first, second = [_example(e) for e in first], [_example(e) for e in second]
  return [{input_name: np.array(first, dtype=object)},
          {input_name: np.array(second, dtype=object)}]


_SIGNATURES = (names.SERVING_DEFAULT, names.SERVING_BYTES,
               names.SERVING_EXAMPLES)


def test_every_served_signature_is_tested(signatures):
  assert set(signatures.keys()) == set(_SIGNATURES)


@pytest.mark.parametrize('signature_name', _SIGNATURES)
def test_every_input_has_no_free_dimension_but_the_batch(signatures,
                                                         signature_name):
  """The general guarantee: requests the signature accepts differ at most in
  dimension 0, which is the one BatchingSession concatenates along."""
  signature = signatures[signature_name]
  for name, spec in signature.structured_input_signature[1].items():
    assert spec.shape.rank is not None, name
    assert spec.shape[0] is None, name
    assert spec.shape[1:].is_fully_defined(), (name, spec.shape)


@pytest.mark.parametrize('signature_name', _SIGNATURES)
def test_two_good_requests_batched_get_their_solo_answers(signatures,
                                                          signature_name):
  signature = signatures[signature_name]
  tasks = _two_requests(signature_name, signature)
  solo = [_run(signature, task) for task in tasks]  # each succeeds alone
  merged = _merge(tasks)
  batched = _split(_run(signature, merged),
                   [batching.input_size(t) for t in tasks])
  for alone, together in zip(solo, batched):
    assert set(alone) == set(names.OUTPUT_KEYS)
    for key in names.OUTPUT_KEYS:
      if alone[key].dtype.kind in 'fc':
        np.testing.assert_allclose(together[key], alone[key], rtol=1e-5,
                                   atol=1e-5, err_msg=key)
      else:
        np.testing.assert_array_equal(together[key], alone[key], err_msg=key)


@pytest.mark.parametrize('signature_name', _SIGNATURES)
def test_a_request_larger_than_a_batch_is_split_and_answered_whole(
    signatures, signature_name):
  """enable_large_batch_splitting: the parts run in different batches, beside
  other requests, and the request gets its solo answer."""
  signature = signatures[signature_name]
  other, large = _two_requests(signature_name, signature)
  solo = _run(signature, large)
  parts = _split_task(large, open_batch_remaining_slot=1,
                      max_execution_batch_size=1)
  assert len(parts) == batching.input_size(large) > 1
  outputs = []
  for part in parts:
    merged = _merge([other, part])
    _, answer = _split(_run(signature, merged),
                       [batching.input_size(other), batching.input_size(part)])
    outputs.append(answer)
  for key in names.OUTPUT_KEYS:
    together = np.concatenate([o[key] for o in outputs])
    if solo[key].dtype.kind in 'fc':
      np.testing.assert_allclose(together, solo[key], rtol=1e-5, atol=1e-5)
    else:
      np.testing.assert_array_equal(together, solo[key])


def test_the_rule_refuses_what_the_old_pixel_signature_accepted():
  """Why serving_default has the model's fixed shape: with a [-1,-1,-1,-1]
  input, two clients sending different sizes in one batch window both
  failed, though each succeeded alone."""
  tasks = [{names.PIXELS_INPUT: np.zeros((1, 28, 28, 1), np.float32)},
           {names.PIXELS_INPUT: np.zeros((1, 32, 32, 1), np.float32)}]
  with pytest.raises(ServingError, match='different shapes and padding is '
                     'turned off'):
    _merge(tasks)

