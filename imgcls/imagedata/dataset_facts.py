"""The dataset facts: what the ExampleGen read, in one typed record.

Written once, by the ExampleGen, as `dataset_info.json` in its Examples
artifact, next to the splits; read back by the Trainer (the label vocabulary
and the counts it trains with), the contract check, `imgcls run`'s summary
and the report. The label vocabulary lives here, in the artifact's file, not
in MLMD: one reader and one writer, whatever filesystem the artifact is on.
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional

from imgcls.contract import names, records
from imgcls.contract.errors import UserError

# [relative path as display text, reason]: a file that could not be an example.
SkippedFile = List[str]


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
  """The label vocabulary, the layout read and the counts per split."""
  data_root: str
  class_names: List[str]  # sorted; a label is an index into it
  train_spans: List[int]  # empty without spans
  test_span: Optional[int]
  test_source: str  # 'folder' or 'hash'
  files: Dict[str, int]  # split -> files found (examples + skipped)
  examples: Dict[str, int]  # split -> examples written
  examples_per_class: Dict[str, Dict[str, int]]  # split -> class -> examples
  skipped: List[SkippedFile] = dataclasses.field(default_factory=list)

  def class_counts(self, split: str) -> List[int]:
    """Examples of each class in the split, in label order."""
    per_class = self.examples_per_class[split]
    return [per_class.get(name, 0) for name in self.class_names]

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=1)


def path_in(examples_uri: str) -> str:
  return os.path.join(examples_uri, names.DATASET_INFO_FILE)


def write(examples_uri: str, facts: DatasetFacts) -> None:
  """The one writer, the ExampleGen's; through TF's file layer, so that an
  artifact on GCS or S3 works as a local one does."""
  import tensorflow as tf  # --help stays fast
  with tf.io.gfile.GFile(path_in(examples_uri), 'w') as f:
    f.write(facts.to_json())  # one write, not json.dump's one per token


def read(examples_uri: str) -> DatasetFacts:
  """The one reader; UserError naming the file when it is missing or does
  not fit."""
  import tensorflow as tf
  path = path_in(examples_uri)
  try:
    with tf.io.gfile.GFile(path) as f:
      raw = json.loads(f.read())
  except tf.errors.NotFoundError:
    raise UserError(f'{path}: no dataset facts (is {examples_uri} an '
                    f'Examples artifact of ImageExampleGen?)') from None
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f'{path}: unreadable dataset facts ({e})') from None
  try:
    return records.from_json(DatasetFacts, raw, path)
  except records.RecordError as e:
    raise UserError(str(e)) from None
