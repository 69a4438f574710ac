"""`imgcls evaluate-serving`: a test split through a served model.

Sends every test image through each protocol (REST, gRPC) and image signature
(encoded bytes, float pixels), and reports per pair: accuracy against the
class folders, latency per request (p50/p95), and failed requests. It then
checks that the protocols, and optionally the SavedModel itself run
in-process, agree image by image: a disagreement means a client or the server
prepares images differently, which accuracy alone can hide.

All requests go to one version (given, or the latest when the run starts), so
a version pushed mid-run cannot make the protocols disagree.
"""
import dataclasses
import sys
import time
from typing import Dict, List, Optional, Sequence, TextIO

import numpy as np
import tensorflow as tf
import tqdm

from imgcls.clients import image_inputs
from imgcls.clients.client import (
  Prediction,
  RequestFailed,
  SignatureInfo,
  wait_until_available,
)
from imgcls.contract import saved_model
from imgcls.contract.errors import UserError
from imgcls.contract.names import CLASS_NAME_OUTPUT
from imgcls.contract.progress import console as terminal
from imgcls.imagedata import class_folders


class LocalModel:
  """The SavedModel on disk, asked like a server (the reference answers)."""
  protocol = 'local'

  def __init__(self, path: str):
    try:
      self._model = saved_model.SavedClassifier(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
      raise UserError(f'cannot load the SavedModel at {path}: {e}') from e
    self._path = path

  def predict(self, signature: str, inputs: Dict[str, np.ndarray],
              version: Optional[int] = None) -> Prediction:
    del version  # the one on disk
    if signature not in self._model.signatures:
      raise UserError(f'{self._path} has no signature {signature}')
    try:
      outputs = self._model.call(signature, **inputs)
    except tf.errors.OpError as e:
      raise RequestFailed(self.protocol, type(e).__name__, e.message) from e
    return Prediction(outputs, None)


@dataclasses.dataclass
class Run:
  """The answers of one source (protocol or local) for one signature."""
  source: str
  signature: str
  predicted: List[Optional[str]]  # class name per image; None: failed
  outputs: List[Optional[Dict[str, np.ndarray]]]  # float outputs per image
  latencies_s: List[float] = dataclasses.field(default_factory=list)
  errors: List[str] = dataclasses.field(default_factory=list)


def evaluate_serving(test_dir: str,
                     clients: Sequence,
                     signatures: Sequence[str],
                     version: Optional[int],
                     batch_size: int,
                     model_path: Optional[str] = None,
                     out: Optional[TextIO] = None) -> int:
  """Runs the evaluation and prints the report; returns the exit status.

  Args:
    clients: RestClient and/or GrpcClient of the server.
    version: the version to ask, or None for the latest AVAILABLE one.
  Returns:
    0 when every request succeeded and all sources agree, else 1.
  """
  listing = class_folders.read_split(test_dir)
  try:
    version, served = _served_model(clients, version, signatures)
  except RequestFailed as e:
    raise UserError(f'the server cannot be evaluated: {e}') from e
  sources = list(clients) + ([LocalModel(model_path)] if model_path else [])
  runs = _send_all(listing, sources, signatures, served, version, batch_size)
  truth = [f.class_name for f in listing.files]
  _report(out or sys.stdout, clients[0].model_name, version, listing,
          batch_size, runs, truth)
  return _verdict(runs, signatures)


def _served_model(clients, version, signatures):
  """(version, its signatures), once every protocol has answered."""
  version = wait_until_available(clients[0], version, timeout_s=0)
  for client in clients[1:]:
    wait_until_available(client, version, timeout_s=0)
  served = clients[0].signatures(version)
  for name in signatures:
    _check_signature(name, served)
  return version, served


def _check_signature(name: str, served: Dict[str, SignatureInfo]) -> None:
  if name not in served:
    raise UserError(f'the served model has no signature {name} (it has '
                    f'{", ".join(sorted(served))})')
  if CLASS_NAME_OUTPUT not in served[name].outputs:
    raise UserError(f'signature {name} has no {CLASS_NAME_OUTPUT} output to '
                    f'compare with the class folders')
  image_inputs.sole_input(name, served[name])


def _send_all(listing, sources, signatures, served, version,
              batch_size) -> List[Run]:
  """Every image, per signature, to every source, one batch at a time: each
  request's inputs are built once, and every source gets the same ones."""
  encoded = [_read(f.path) for f in listing.files]
  plan = {
      name: _batches(served[name], encoded, batch_size)
      for name in signatures
  }
  runs = {(name, source.protocol):
          Run(source.protocol, name, [None] * len(encoded),
              [None] * len(encoded))
          for name in signatures for source in sources}
  total = sum(len(batches) for batches in plan.values()) * len(sources)
  with tqdm.tqdm(total=total, desc='evaluate-serving', unit='request',
                 file=terminal()) as progress:
    for name in signatures:
      for batch in plan[name]:
        inputs = image_inputs.signature_inputs(name, served[name],
                                               [encoded[i] for i in batch])
        for source in sources:
          _send(source, runs[name, source.protocol], inputs, batch, version)
          progress.update()
  return list(runs.values())


def _read(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def _batches(signature, encoded, batch_size) -> List[List[int]]:
  sizes = [image_inputs.same_request_key(signature, e) for e in encoded]
  return image_inputs.batches_by_size(sizes, batch_size)


def _send(source, run: Run, inputs, batch: List[int], version) -> None:
  started = time.perf_counter()
  try:
    prediction = source.predict(run.signature, inputs, version)
  except RequestFailed as e:
    run.errors.extend([str(e)] * len(batch))
    return
  run.latencies_s.append(time.perf_counter() - started)
  outputs = prediction.outputs
  for row, index in enumerate(batch):
    run.predicted[index] = outputs[CLASS_NAME_OUTPUT][row].decode('utf-8')
    run.outputs[index] = {
        name: value[row]
        for name, value in outputs.items()
        if value.dtype.kind == 'f'
    }


@dataclasses.dataclass(frozen=True)
class Agreement:
  compared: int  # images that every source answered
  agreeing: int  # ... with the same class
  largest_difference: float  # between their float outputs


def _agreement(runs: List[Run], signature: str) -> Agreement:
  of_signature = [r for r in runs if r.signature == signature]
  reference = of_signature[0]
  compared = agreeing = 0
  largest = 0.0
  for index in range(len(reference.predicted)):
    names = {r.predicted[index] for r in of_signature}
    if None in names:
      continue
    compared += 1
    agreeing += len(names) == 1
    for run in of_signature[1:]:
      for name, value in run.outputs[index].items():
        difference = np.abs(value - reference.outputs[index][name])
        largest = max(largest, float(np.max(difference)))
  return Agreement(compared, agreeing, largest)


def _verdict(runs: List[Run], signatures: Sequence[str]) -> int:
  failed = [run for run in runs if run.errors]
  for run in failed:
    print(f'evaluate-serving: {len(run.errors)} images failed over '
          f'{run.source} with {run.signature}; first error: {run.errors[0]}',
          file=terminal())
  disagreeing = False
  for name in signatures:
    agreement = _agreement(runs, name)
    if agreement.agreeing < agreement.compared:
      disagreeing = True
      print(f'evaluate-serving: the sources disagree on the class of '
            f'{agreement.compared - agreement.agreeing} images with {name}',
            file=terminal())
  return 1 if failed or disagreeing else 0


def _report(out, model_name, version, listing, batch_size, runs, truth):
  print(f'Model {model_name} version {version}: {len(truth)} images of '
        f'{len(listing.class_names)} classes from {listing.split_dir}, '
        f'batches of up to {batch_size}', file=out)
  print(f'{"source":8}{"signature":18}{"images":>7}{"accuracy":>10}'
        f'{"p50 ms":>9}{"p95 ms":>9}{"errors":>8}', file=out)
  for run in runs:
    answered = [(p, t) for p, t in zip(run.predicted, truth) if p is not None]
    accuracy = (f'{100 * sum(p == t for p, t in answered) / len(answered):.1f}%'
                if answered else '-')
    p50, p95 = (np.percentile(run.latencies_s, [50, 95]) * 1000
                if run.latencies_s else (np.nan, np.nan))
    print(f'{run.source:8}{run.signature:18}{len(answered):>7}'
          f'{accuracy:>10}{p50:>9.1f}{p95:>9.1f}{len(run.errors):>8}',
          file=out)
  sources = list(dict.fromkeys(run.source for run in runs))
  if len(sources) > 1:
    print(f'Agreement of {", ".join(sources)}:', file=out)
    for signature in dict.fromkeys(run.signature for run in runs):
      agreement = _agreement(runs, signature)
      print(f'  {signature}: same class on {agreement.agreeing} of '
            f'{agreement.compared} images answered by all; largest output '
            f'difference {agreement.largest_difference:.3g}', file=out)
