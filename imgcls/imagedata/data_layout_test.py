"""Resolving the data root: plain and span layouts, windows, hash splits."""
import os

import pytest

from imgcls.contract.errors import UserError
from imgcls.imagedata import data_layout
from imgcls.serving_dir import versions as model_versions
from tests import images


def _tree(root, spans=None, test_spans=(), per_class=None):
  per_class = per_class or {'a': 3, 'b': 3}
  if spans is None:
    images.write_class_folders(os.path.join(root, 'train'), per_class)
    if test_spans:
      images.write_class_folders(os.path.join(root, 'test'), per_class, seed=9)
    return root
  for span in spans:
    images.write_class_folders(
        os.path.join(root, f'span-{span}', 'train'), per_class, seed=span)
  for span in test_spans:
    images.write_class_folders(
        os.path.join(root, f'span-{span}', 'test'), per_class, seed=100 + span)
  return root


def test_plain_layout_with_test_folder(tmp_path):
  plan = data_layout.resolve(_tree(str(tmp_path), test_spans=[1]))
  assert plan.class_names == ['a', 'b']
  assert len(plan.files['train']) == 6 and len(plan.files['test']) == 6
  assert plan.test_source == 'folder' and plan.span == 0


def test_without_test_folder_the_split_is_by_path_hash_and_stable(tmp_path):
  root = _tree(str(tmp_path), per_class={'a': 40, 'b': 40})
  before = data_layout.resolve(root)
  assert before.test_source == 'hash'
  assert 0 < len(before.files['test']) < len(before.files['train'])
  images.write_class_folders(os.path.join(root, 'train'), {'a': 20, 'b': 20},
                             seed=5)
  after = data_layout.resolve(root)
  old_test = {f.relative_path for f in before.files['test']}
  new_test = {f.relative_path for f in after.files['test']}
  assert old_test <= new_test  # old files never move between splits
  assert not old_test & {f.relative_path for f in after.files['train']}


def test_latest_span_and_window(tmp_path):
  root = _tree(str(tmp_path), spans=[1, 2, 3], test_spans=[1, 2])
  latest = data_layout.resolve(root)
  assert latest.train_spans == [3] and latest.span == 3
  assert latest.test_span == 2  # the newest span that has a test split
  assert {f.relative_path.split(os.sep)[0] for f in latest.files['train']
         } == {'span-3'}
  window = data_layout.resolve(root, span_window=2)
  assert window.train_spans == [2, 3]
  assert len(window.files['train']) == 12


def test_new_class_in_a_span_joins_the_vocabulary(tmp_path):
  root = _tree(str(tmp_path), spans=[1], test_spans=[1])
  images.write_class_folders(os.path.join(root, 'span-2', 'train'),
                             {'a': 2, 'b': 2, 'c': 2})
  assert data_layout.resolve(root).class_names == ['a', 'b', 'c']


def test_fingerprint_changes_with_the_files(tmp_path):
  root = _tree(str(tmp_path), test_spans=[1])
  first = data_layout.resolve(root).fingerprint()
  assert data_layout.resolve(root).fingerprint() == first
  images.write_class_folders(os.path.join(root, 'train'), {'a': 1}, seed=7)
  assert data_layout.resolve(root).fingerprint() != first


@pytest.mark.parametrize('make,message', [
    (lambda root: None, 'no such data directory'),
    (lambda root: os.makedirs(os.path.join(root, 'other')), 'expected train'),
    (lambda root: os.makedirs(os.path.join(root, 'train')), 'no class folders'),
])
def test_bad_data_roots_are_named(tmp_path, make, message):
  root = str(tmp_path / 'data')
  make(root)
  with pytest.raises(UserError, match=message):
    data_layout.resolve(root)


def test_publish_is_atomic_and_versions_increase(tmp_path):
  base = str(tmp_path / 'Model')

  def write(directory):
    os.makedirs(directory)
    with open(os.path.join(directory, 'saved_model.pb'), 'w') as f:
      f.write('x')

  assert model_versions.publish(base, write) == 1
  assert model_versions.publish(base, write) == 2

  def interrupted(directory):
    os.makedirs(directory)
    raise KeyboardInterrupt  # killed before the rename

  with pytest.raises(KeyboardInterrupt):
    model_versions.publish(base, interrupted)
  assert sorted(os.listdir(base)) == ['1', '2']
  # A writer that died outright leaves a hidden directory: not a version.
  os.makedirs(os.path.join(base, '.tmp-dead'))
  assert model_versions.versions(base) == [1, 2]
  assert model_versions.publish(base, write) == 3


def test_prune_keeps_the_newest(tmp_path):
  base = str(tmp_path)
  for v in (1, 2, 5, 7):
    os.makedirs(os.path.join(base, str(v)))
  assert model_versions.prune(base, keep=2) == [1, 2]
  assert model_versions.versions(base) == [5, 7]
  assert model_versions.prune(base, keep=0) == [5]  # never the newest
  assert model_versions.versions(base) == [7]


def test_a_class_folder_name_that_is_not_utf8_is_refused_by_name(tmp_path):
  root = _tree(str(tmp_path))
  os.makedirs(os.path.join(os.fsencode(root), b'train', b'caf\xe9'))
  with pytest.raises(UserError, match=r'train/caf\\xe9: a class folder name '
                     'must be valid UTF-8'):
    data_layout.resolve(root)


def test_entries_that_cannot_be_examples_are_listed_and_fingerprinted(
    tmp_path):
  root = _tree(str(tmp_path), test_spans=[1])
  first = data_layout.resolve(root)
  assert first.skipped == []
  os.symlink('/nowhere', os.path.join(root, 'test', 'a', 'gone.png'))
  plan = data_layout.resolve(root)
  assert plan.skipped == [('test/a/gone.png',
                           'broken symbolic link to /nowhere')]
  assert len(plan.files['test']) == 6
  assert plan.fingerprint() != first.fingerprint()


@pytest.mark.parametrize('name', ['span-01', 'span-0', 'span-007', 'span-٣'])
def test_a_span_named_otherwise_than_span_n_is_refused_by_name(tmp_path, name):
  root = _tree(str(tmp_path), spans=[1, 2])
  os.rename(os.path.join(root, 'span-2'), os.path.join(root, name))
  with pytest.raises(UserError, match=f'^{os.path.join(root, name)}: not a '
                     'span name; spans are named span-<N>, N from 1 without '
                     'leading zeros'):
    data_layout.resolve(root)


def test_names_that_are_no_span_at_all_are_passed_over(tmp_path):
  root = _tree(str(tmp_path), spans=[1])
  for name in ('span-x', 'span-', 'span-2.old', 'spans', 'notes'):
    os.makedirs(os.path.join(root, name))
  assert data_layout.span_numbers(root) == [1]


@pytest.mark.parametrize('plain', ['train', 'test'])
def test_a_root_that_mixes_the_layouts_is_refused_naming_both(tmp_path, plain):
  root = _tree(str(tmp_path), spans=[1])
  images.write_class_folders(os.path.join(root, plain), {'a': 1, 'b': 1})
  with pytest.raises(UserError, match=f'^{root}: holds both {plain}/ \\(the '
                     'plain layout\\) and span-1/ \\(the span layout\\)'):
    data_layout.resolve(root)
