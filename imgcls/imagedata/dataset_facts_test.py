"""The dataset facts: one writer, one reader, and a clear error for a file
that does not fit."""
import json

import pytest

from imgcls.contract.errors import UserError
from imgcls.imagedata import dataset_facts
from tests import artifacts


def test_the_reader_returns_what_the_writer_wrote(tmp_path):
  facts = artifacts.dataset_facts_of(
      {'train': {'a': 3, 'b': 1}, 'test': {'a': 1, 'b': 1}})
  dataset_facts.write(str(tmp_path), facts)
  assert dataset_facts.read(str(tmp_path)) == facts
  assert facts.class_counts('train') == [3, 1]


@pytest.mark.parametrize('change, named', [
    (lambda raw: raw.pop('class_names'), "missing 'class_names'"),
    (lambda raw: raw.update(examples={'train': '3'}),
     'dataset_info.json.examples: expected Dict[str, int], got an object'),
    (lambda raw: raw.update(test_span=True),
     'dataset_info.json.test_span: expected Optional[int], got a boolean'),
])
def test_a_file_that_does_not_fit_is_named_with_its_field(tmp_path, change,
                                                         named):
  facts = artifacts.dataset_facts_of({'train': {'a': 1}, 'test': {'a': 1}})
  dataset_facts.write(str(tmp_path), facts)
  path = tmp_path / 'dataset_info.json'
  raw = json.loads(path.read_text())
  change(raw)
  path.write_text(json.dumps(raw))
  with pytest.raises(UserError, match='dataset_info.json') as e:
    dataset_facts.read(str(tmp_path))
  assert named in str(e.value)


def test_a_missing_file_says_which_artifact(tmp_path):
  with pytest.raises(UserError, match='no dataset facts'):
    dataset_facts.read(str(tmp_path))
