"""Which files a pipeline run reads: the data root's layout, resolved.

Two layouts are accepted, one per data root (span_numbers refuses a mix):
  data_root/train/<class>/*  [data_root/test/<class>/*]
  data_root/span-<N>/train/<class>/*  [data_root/span-<N>/test/<class>/*]

With spans, the newest `span_window` spans are trained on, and the test split
comes from the newest span that has one, so that successive models are
compared on the same ground. Without any test folder, files are split by a
hash of their path: adding files never moves old ones between splits.

The ExampleGen's driver (locally) and its executor (everywhere, Kubeflow
included, where no driver runs) resolve the layout with this same code.
"""
import dataclasses
import hashlib
import json
import os
import re
from typing import Dict, List, Optional, Tuple

from imgcls.contract import storage
from imgcls.contract.errors import UserError
from imgcls.imagedata import class_folders

TRAIN = 'train'
TEST = 'test'
SPLITS = (TRAIN, TEST)
# Any digits after `span-` name a span; only the plain form is accepted, so
# that each span has one folder name, which every reader rebuilds from its
# number (span_dir). Unicode digits are refused too.
_SPAN_LIKE = re.compile(r'span-\d+')
_SPAN_DIR = re.compile(r'span-([1-9][0-9]*)')
# Without a test folder, paths hashing below this share of 100 go to test.
HASH_TEST_PERCENT = 20


@dataclasses.dataclass(frozen=True)
class ImageFile:
  path: str  # absolute
  relative_path: str  # to the data root; stable across machines
  class_name: str


@dataclasses.dataclass
class DataPlan:
  """The files of each output split, and where they came from."""
  data_root: str
  class_names: List[str]
  files: Dict[str, List[ImageFile]]  # split name -> files
  train_spans: List[int]  # empty without spans
  test_span: Optional[int]
  test_source: str  # 'folder' or 'hash'
  # Entries of the class folders that cannot be examples, (relative path as
  # display text, reason): class_folders.class_files lists them.
  skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

  @property
  def span(self) -> int:
    """The newest span read (0 without spans), as TFX records it."""
    return self.train_spans[-1] if self.train_spans else 0

  def fingerprint(self) -> str:
    """Changes when any file read is added, removed or modified, or an
    entry that cannot be read appears or goes."""
    digest = hashlib.sha256()
    for split in SPLITS:
      files = self.files[split]
      stats = storage.sizes_and_mtimes_ns([f.path for f in files])
      for f, (size, mtime_ns) in zip(files, stats):
        digest.update(
            f'{split}\0{f.relative_path}\0{size}\0{mtime_ns}\n'.encode())
    for path, reason in self.skipped:
      digest.update(f'skipped\0{path}\0{reason}\n'.encode())
    return digest.hexdigest()

  def summary(self) -> Dict[str, object]:
    return {
        'data_root': self.data_root,
        'class_names': self.class_names,
        'train_spans': self.train_spans,
        'test_span': self.test_span,
        'test_source': self.test_source,
        'files': {s: len(self.files[s]) for s in SPLITS},
    }


def span_numbers(data_root: str) -> List[int]:
  """The spans present under data_root, ascending.

  A span folder named otherwise than `span-<N>` (N from 1, no leading
  zeros), and a root that holds spans beside a plain `train/` or `test/`,
  are refused by name: read either way, part of the data would go unseen.
  """
  if not storage.isdir(data_root):
    return []
  names = sorted(e.name for e in storage.scandir(data_root))
  odd = [n for n in names if _SPAN_LIKE.fullmatch(n) and
         not _SPAN_DIR.fullmatch(n)]
  if odd:
    raise UserError(f'{os.path.join(data_root, odd[0])}: not a span name; '
                    'spans are named span-<N>, N from 1 without leading '
                    'zeros (span-1, span-2, ...): rename it')
  spans = sorted(int(m.group(1))
                 for m in map(_SPAN_DIR.fullmatch, names) if m)
  plain = [n for n in SPLITS if n in names]
  if spans and plain:
    raise UserError(
        f'{data_root}: holds both {plain[0]}/ (the plain layout) and '
        f'span-{spans[0]}/ (the span layout); use one: move {plain[0]}/ into '
        'a span, or the spans out of this folder')
  return spans


def span_dir(data_root: str, span: int) -> str:
  return os.path.join(data_root, f'span-{span}')


def resolve(data_root: str, span_window: int = 1) -> DataPlan:
  """Resolves the layout of data_root into the files of each split."""
  if not storage.isdir(data_root):
    raise UserError(f'{data_root}: no such data directory')
  spans = span_numbers(data_root)
  if spans:
    train_spans = [
        s for s in spans
        if storage.isdir(os.path.join(span_dir(data_root, s), TRAIN))
    ][-max(1, span_window):]
    if not train_spans:
      raise UserError(f'{data_root}: no span-<N>/{TRAIN} folder')
    test_spans = [
        s for s in spans
        if storage.isdir(os.path.join(span_dir(data_root, s), TEST))
    ]
    test_span = test_spans[-1] if test_spans else None
    train_dirs = [os.path.join(span_dir(data_root, s), TRAIN)
                  for s in train_spans]
    test_dir = (os.path.join(span_dir(data_root, test_span), TEST)
                if test_span is not None else None)
  else:
    train_spans, test_span = [], None
    train_dirs = [os.path.join(data_root, TRAIN)]
    test_dir = os.path.join(data_root, TEST)
    if not storage.isdir(train_dirs[0]):
      raise UserError(
          f'{data_root}: expected {TRAIN}/<class>/<images> (and optionally '
          f'{TEST}/<class>/<images>), or span-<N>/{TRAIN}/<class>/<images>')
    if not storage.isdir(test_dir):
      test_dir = None

  split_dirs = {TRAIN: train_dirs, TEST: [test_dir] if test_dir else []}
  class_names = sorted({
      name for dirs in split_dirs.values() for d in dirs
      for name in class_folders.class_names_of(d)
  })
  files = {split: [] for split in split_dirs}
  skipped = []
  for split, dirs in split_dirs.items():
    for d in dirs:
      found, not_images = listing_of_split(data_root, d)
      files[split] += found
      skipped += not_images
  test_source = 'folder'
  if test_dir is None:
    files, test_source = _hash_split(files[TRAIN]), 'hash'
  return DataPlan(data_root, class_names, files, train_spans, test_span,
                  test_source, skipped)


def files_of_split(data_root: str, split_dir: str) -> List[ImageFile]:
  """The files of split_dir/<class>/* that may be images, with paths
  relative to data_root."""
  return listing_of_split(data_root, split_dir)[0]


def listing_of_split(data_root: str, split_dir: str
                    ) -> Tuple[List[ImageFile], List[Tuple[str, str]]]:
  """files_of_split, and the entries that cannot be examples: (path
  relative to data_root as display text, reason)."""
  # Slicing, not os.path.relpath: it is the cost per file of a large dataset.
  prefix = len(os.path.join(data_root, ''))
  files, skipped = [], []
  for name in class_folders.class_names_of(split_dir):
    paths, not_images = class_folders.class_files(split_dir, name)
    files += [ImageFile(path, path[prefix:], name) for path in paths]
    skipped += [(class_folders.display_path(path[prefix:]), reason)
                for path, reason in not_images]
  return files, skipped


def _hash_split(files: List[ImageFile]) -> Dict[str, List[ImageFile]]:
  split = {TRAIN: [], TEST: []}
  for f in files:
    bucket = int(hashlib.md5(f.relative_path.encode()).hexdigest(), 16) % 100
    split[TEST if bucket < HASH_TEST_PERCENT else TRAIN].append(f)
  return split


def plan_json(plan: DataPlan) -> str:
  return json.dumps(plan.summary(), sort_keys=True)
