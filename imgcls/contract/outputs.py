"""What a classifier's answer must satisfy, whoever asks: the pipeline's
contract check of an exported model, and verify-serving of a served one."""
from typing import List, Optional, Sequence

from imgcls.contract import names


def class_problems(class_ids: Sequence[int], class_name_values: Sequence,
                   num_classes: int,
                   class_names: Optional[Sequence[str]] = None) -> List[str]:
  """Ids outside the classes, and names that are not the vocabulary's name
  for the id; `class_names` None when the vocabulary is not known."""
  if class_names is not None and len(class_names) != num_classes:
    return [f'the model has {num_classes} classes; the vocabulary has '
            f'{len(class_names)} ({list(class_names)})']
  problems = []
  for class_id, value in zip(class_ids, class_name_values):
    name = value.decode('utf-8', errors='replace') if isinstance(
        value, bytes) else str(value)
    class_id = int(class_id)
    if not 0 <= class_id < num_classes:
      problems.append(f'{names.CLASS_ID_OUTPUT} {class_id} is not one of the '
                      f'{num_classes} classes')
    elif class_names is not None and class_names[class_id] != name:
      problems.append(f'{names.CLASS_NAME_OUTPUT} {name!r} is not class '
                      f'{class_id} ({class_names[class_id]!r})')
  return problems
