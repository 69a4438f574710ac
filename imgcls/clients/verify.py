"""`imgcls verify-serving`: one real image through a served version (a gate);
and `--verify-serving`, the same after a push, with the run's test images
checked against the model in-process and the push rolled back on failure.

It passes only when the version (or the latest one) is AVAILABLE and answers
a real image over REST and over gRPC, with every signature that takes images,
with the outputs and shapes its metadata declares, a class name from the
model's classes, and the same class over both protocols. Otherwise it stops
with a message that says what is wrong, and a non-zero exit status.

Waiting for AVAILABLE matters: TF Serving answers the status call with 200 even
for a version whose load failed, so "the server answers" proves nothing.
"""
import dataclasses
import io
import os
import socket
import sys
import time
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

import numpy as np
import tensorflow as tf

from imgcls.clients import image_inputs
from imgcls.clients.client import (
  Prediction,
  RequestFailed,
  SignatureInfo,
  wait_until_available,
)
from imgcls.contract import names
from imgcls.contract import outputs as outputs_lib
from imgcls.contract.errors import UserError
from imgcls.contract.names import CLASS_NAME_OUTPUT as _CLASS_NAME
from imgcls.contract.names import (
  IMAGE_SIGNATURES,
  SERVING_BYTES,
  SERVING_DEFAULT,
)
from imgcls.imagedata import preprocessing, tf_examples
from imgcls.serving_dir import history, warmup
from imgcls.serving_dir import provenance as provenance_lib
from imgcls.serving_dir import versions as model_versions

_CLASS_ID, _PROBABILITIES = 'class_id', 'probabilities'


def verify_serving(rest, grpc, version: Optional[int], timeout_s: float,
                   image: bytes, class_names: Optional[Sequence[str]] = None,
                   out: Optional[TextIO] = None) -> int:
  """Checks the served model; returns 0, or raises UserError saying why not."""
  version = wait_until_available(rest, version, timeout_s)
  wait_until_available(grpc, version, timeout_s=0)
  try:
    served = rest.signatures(version)
  except RequestFailed as e:
    raise UserError(f'version {version} of {rest.model_name}: {e}') from e
  if SERVING_BYTES not in served:
    raise UserError(f'version {version} has no {SERVING_BYTES} '
                    f'signature (it has {", ".join(sorted(served))})')
  problems, answers = [], {}
  for name in (n for n in IMAGE_SIGNATURES if n in served):
    inputs = image_inputs.signature_inputs(name, served[name], [image])
    for client in (rest, grpc):
      where = f'{client.protocol} {name}'
      try:
        prediction = client.predict(name, inputs, version)
      except RequestFailed as e:
        problems.append(f'{where}: {e}')
        continue
      found = _problems(prediction, served[name], version, class_names)
      problems.extend(f'{where}: {problem}' for problem in found)
      if not found:
        answers.setdefault(name, {})[client.protocol] = _class_name(prediction)
  problems.extend(_disagreements(answers))
  if problems:
    raise UserError(f'version {version} of {rest.model_name} failed '
                    f'verification:\n  ' + '\n  '.join(problems))
  classes = sorted({c for by_protocol in answers.values()
                    for c in by_protocol.values()})
  print(f'OK: version {version} of {rest.model_name} answers over REST and '
        f'gRPC with {", ".join(answers)} (class {", ".join(classes)})',
        file=out or sys.stdout)
  return 0


def _class_name(prediction: Prediction) -> str:
  return prediction.outputs[_CLASS_NAME][0].decode('utf-8', errors='replace')


def _problems(prediction: Prediction, signature: SignatureInfo, version: int,
              class_names: Optional[Sequence[str]]) -> List[str]:
  """What is wrong with the answer to one image."""
  if prediction.version not in (None, version):
    return [f'answered by version {prediction.version}, not {version}']
  problems = []
  for name, info in signature.outputs.items():
    value = prediction.outputs.get(name)
    if value is None:
      problems.append(f'no output {name}')
    elif not _shape_fits(value.shape, info.shape):
      problems.append(f'output {name} has shape {list(value.shape)}; the '
                      f'metadata declares {info.shape} (-1: any size) and '
                      f'one image was sent')
  if problems or _CLASS_NAME not in prediction.outputs:
    return problems or [f'no {_CLASS_NAME} output']
  return _class_problems(prediction, class_names)


def _shape_fits(shape, declared: Optional[List[int]]) -> bool:
  if declared is None:  # unknown rank: only the batch of one is checked
    return bool(shape) and shape[0] == 1
  expected = [1] + list(declared[1:])
  return len(shape) == len(expected) and all(
      e in (-1, s) for s, e in zip(shape, expected))


def _class_problems(prediction: Prediction,
                    class_names: Optional[Sequence[str]]) -> List[str]:
  class_name, outputs = _class_name(prediction), prediction.outputs
  if not class_name:
    return [f'empty {_CLASS_NAME}']
  problems = []
  if _CLASS_ID in outputs and _PROBABILITIES in outputs:
    problems = outputs_lib.class_problems(
        outputs[_CLASS_ID][:1], [class_name],
        outputs[_PROBABILITIES].shape[-1], class_names or None)
  if class_names and class_name not in class_names:
    problems.append(f'{_CLASS_NAME} {class_name!r} is not one of the '
                    f'classes {list(class_names)}')
  return problems


def _disagreements(answers: Dict[str, Dict[str, str]]) -> List[str]:
  return [
      f'{name}: the protocols disagree: ' +
      ', '.join(f'{p} says {c!r}' for p, c in by_protocol.items())
      for name, by_protocol in answers.items()
      if len(set(by_protocol.values())) > 1
  ]


# --- `--verify-serving`: a push that checks itself ---------------------------
# Test images sent; each signature gets them as one batch over each protocol.
PUSH_CHECK_IMAGES = 8
# REST carries floats as decimal JSON text; gRPC as float32 bits.
_PROBABILITY_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class PushVerdict:
  """How the check of a pushed version ended."""
  version: int
  problem: str = ''  # '' when the server answered as the model in-process
  rolled_back_as: Optional[int] = None  # the version republishing the previous
  not_rolled_back: str = ''  # why there was no rollback, after a problem

  @property
  def passed(self) -> bool:
    return not self.problem

  def summary(self) -> str:
    if self.passed:
      return (f'  serving verified: version {self.version} answers over REST '
              'and gRPC as the model does in-process')
    outcome = (f'rolled back: version {self.rolled_back_as} republishes the '
               'version before it' if self.rolled_back_as is not None else
               f'NOT rolled back: {self.not_rolled_back}')
    return (f'  serving verification FAILED for version {self.version}: '
            f'{self.problem}\n  {outcome}')


def verify_push(check, model_base_path: str, version: int,
                examples_uri: Optional[str]) -> PushVerdict:
  """Checks a pushed version on the server `check` names (a
  pipeline.config.ServingCheck); on failure, rolls the push back."""
  from imgcls.clients.client import GrpcClient, RestClient
  from imgcls.contract.saved_model import SavedClassifier
  model_name = os.path.basename(model_base_path.rstrip('/'))
  version_dir = os.path.join(model_base_path, str(version))
  images = (_test_images(examples_uri) or warmup.images_in(version_dir) or
            [image_inputs.demo_png()])
  rest = RestClient(check.host, check.rest_port, model_name)
  try:
    with GrpcClient(check.host, check.grpc_port, model_name) as grpc:
      verify_serving(rest, grpc, version, check.timeout_s, images[0],
                     out=io.StringIO())
      problems = _differences_from_in_process(
          (rest, grpc), SavedClassifier(version_dir), version, images)
  except UserError as e:
    problems = [str(e)]
  if not problems:
    return PushVerdict(version)
  return _roll_back(model_base_path, version, '; '.join(problems))


def _differences_from_in_process(clients, model, version: int,
                                 images: Sequence[bytes]) -> List[str]:
  served = clients[0].signatures(version)
  expected = {
      SERVING_BYTES: model.predict_bytes(images),
      SERVING_DEFAULT: model.predict_pixels(
          preprocessing.client_pixels(images, model.pixel_shape)),
  }
  problems = []
  for name, wanted in expected.items():
    inputs = image_inputs.signature_inputs(name, served[name], images)
    for client in clients:
      try:
        got = client.predict(name, inputs, version).outputs
      except RequestFailed as e:
        problems.append(f'{client.protocol} {name}: {e}')
        continue
      if list(got[_CLASS_NAME]) != list(wanted[_CLASS_NAME]):
        problems.append(f'{client.protocol} {name}: classes '
                        f'{_decoded(got[_CLASS_NAME])}, in-process '
                        f'{_decoded(wanted[_CLASS_NAME])}')
      elif not np.allclose(got[_PROBABILITIES], wanted[_PROBABILITIES],
                           atol=_PROBABILITY_TOLERANCE):
        gap = np.abs(got[_PROBABILITIES] - wanted[_PROBABILITIES]).max()
        problems.append(f'{client.protocol} {name}: probabilities differ from '
                        f'in-process by up to {gap:.2g}')
  return problems


def _decoded(class_names) -> List[str]:
  return [n.decode('utf-8', errors='replace') for n in class_names]


def _test_images(examples_uri: Optional[str]) -> List[bytes]:
  """Encoded images of the run's test split, as the ExampleGen stored them."""
  if not examples_uri:
    return []
  records = next(tf_examples.test_records(examples_uri, PUSH_CHECK_IMAGES,
                                          PUSH_CHECK_IMAGES), [])
  return (list(tf_examples.parse_image_bytes(tf.constant(records)).numpy())
          if records else [])


def _roll_back(model_base_path: str, version: int, problem: str) -> PushVerdict:
  """Republishes the version before `version`, if `version` still serves."""
  published = model_versions.versions(model_base_path)
  earlier = [v for v in published if v < version]
  if published[-1:] != [version]:
    why = f'version {published[-1]} was published since' if published else (
        'the version is gone')
    return PushVerdict(version, problem, not_rolled_back=why)
  if not earlier:
    return PushVerdict(version, problem,
                       not_rolled_back='it is the first version; nothing to '
                       'roll back to')
  try:
    new, _ = history.rollback(model_base_path, earlier[-1])
  except UserError as e:  # e.g. the version before holds no SavedModel
    return PushVerdict(version, problem, not_rolled_back=str(e))
  return PushVerdict(version, problem, rolled_back_as=new)


def verify_run(config, result) -> Optional[PushVerdict]:
  """verify_push for what a pipeline run (a pipeline.results.RunResult of the
  pipeline.config.PipelineConfig) pushed; None when nothing is to check."""
  if config.serving_check is None or not result.pushed_version:
    return None
  return verify_push(config.serving_check, config.model_base_path,
                     int(result.pushed_version),
                     result.uri(names.ARTIFACT_EXAMPLES))


# --- `imgcls verify-push`: the same as the last step of a Kubeflow run -------


def version_pushed_by_run(model_base_path: str, run_id: str) -> Optional[int]:
  """The version the Pusher of KFP run `run_id` published, if any: its
  provenance names a model under <root>/<pipeline>/<run ID>/, where KFP's
  driver puts every output of the run (imgcls/retrain/kfp_runs.py reads it
  alike). A rollback copies another version's provenance, so only pushes
  count."""
  for version in reversed(model_versions.versions(model_base_path)):
    try:
      pushed = provenance_lib.of_version(
          os.path.join(model_base_path, str(version)))
    except provenance_lib.ProvenanceError:
      continue
    if pushed.kind == provenance_lib.PUSH and f'/{run_id}/' in pushed.model_uri:
      return version
  return None


def verify_push_at_every_address(check, model_base_path: str, version: int
                                ) -> Tuple[List[str], PushVerdict]:
  """verify_push at each address `check.host` resolves to, until one fails:
  behind a headless Service, every ready pod must serve the version, not
  just the one a Service address would pick. Returns (addresses, verdict)."""
  addresses = _addresses(check.host, check.timeout_s)
  if not addresses:  # the check of the bare name says why, and rolls back
    addresses, check = [check.host], dataclasses.replace(check, timeout_s=0)
  for address in addresses:
    verdict = verify_push(dataclasses.replace(check, host=address),
                          model_base_path, version, None)
    if not verdict.passed:
      break
  return addresses, verdict


def _addresses(host: str, timeout_s: float) -> List[str]:
  """The host's addresses, waiting up to `timeout_s` for a first one: a pod
  joins a headless Service's DNS only once ready, i.e. serving a version."""
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      return sorted({info[4][0] for info in socket.getaddrinfo(
          host, None, type=socket.SOCK_STREAM)})
    except socket.gaierror:
      if time.monotonic() >= deadline:
        return []
      time.sleep(1.0)
