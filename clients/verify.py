"""`imgcls verify-serving`: one real image through a served version (a gate).

It passes only when the version (or the latest one) is AVAILABLE and answers
a real image over REST and over gRPC, with every signature that takes images,
with the outputs and shapes its metadata declares, a class name from the
model's classes, and the same class over both protocols. Otherwise it stops
with a message that says what is wrong, and a non-zero exit status.

Waiting for AVAILABLE matters: TF Serving answers the status call with 200 even
for a version whose load failed, so "the server answers" proves nothing.
"""
import sys
from typing import Dict, List, Optional, Sequence, TextIO

from contract.errors import UserError
from clients import image_inputs
from clients.client import (Prediction, RequestFailed, SignatureInfo,
                            wait_until_available)
from contract.names import CLASS_NAME_OUTPUT as _CLASS_NAME
from contract.names import IMAGE_SIGNATURES, SERVING_BYTES

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
    class_id = int(outputs[_CLASS_ID][0])
    num_classes = outputs[_PROBABILITIES].shape[-1]
    if not 0 <= class_id < num_classes:
      problems.append(f'{_CLASS_ID} {class_id} is not one of the '
                      f'{num_classes} classes')
    elif class_names and len(class_names) != num_classes:
      problems.append(f'the model has {num_classes} classes; --class-names '
                      f'lists {len(class_names)}')
    elif class_names and class_names[class_id] != class_name:
      problems.append(f'{_CLASS_NAME} {class_name!r} is not class {class_id} '
                      f'({class_names[class_id]!r})')
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
