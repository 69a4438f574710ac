"""Hidden temporary directories beside the versions, and whether their writer
lives.

A publish writes its version under `.tmp-<id>` and renames it into place; a
writer killed mid-copy leaves its temporary behind. Whether a temporary is
still being written is judged by a lock that its writer holds for as long as
the directory can exist: `.tmp-<id>.lock`, flock(2)-ed before the directory
is made and released only after it is renamed or removed. The kernel drops
the lock when the writer dies, however it dies. So a later publish that can
take the lock knows the writer is gone and removes what it left, at once; one
that cannot leaves the directory alone, however old its files look
(`copytree` keeps the source's modification times, so they say nothing about
the writer).

Across hosts: pods on different nodes that share an RWX volume see each
other's locks wherever the filesystem supports them: NFSv4 (Linux's NFS client
maps flock to NFS byte-range locks, and the server drops a dead client's
locks when its lease expires), CephFS, EFS, Filestore. A pid alone would not
do: every pod has its own pid namespace, and a pid means nothing on another
node. A volume mounted with `nolock` keeps locks local to one node, and must
not be written from several. The lock file names its holder (host, pid,
start) for the logs only.
"""
import contextlib
import datetime
import errno
import fcntl
import logging
import os
import shutil
import socket
from typing import Iterator
import uuid

TMP_PREFIX = '.tmp-'
LOCK_SUFFIX = '.lock'

_log = logging.getLogger(__name__)


def is_temporary(name: str) -> bool:
  return name.startswith(TMP_PREFIX)


@contextlib.contextmanager
def temporary_dir(base_dir: str) -> Iterator[str]:
  """A fresh path `base_dir/.tmp-<id>` (not yet created) that counts as this
  writer's until the context ends; whatever is left there is then removed."""
  path, lock = _locked_new_path(base_dir)
  try:
    yield path
  finally:
    shutil.rmtree(path, ignore_errors=True)
    _unlink(path + LOCK_SUFFIX)
    lock.close()  # releases the flock, after the directory is gone


def _locked_new_path(base_dir: str):
  """(path, open lock file) for an unused temporary name, its lock held.

  A clean-up may unlink a lock file in the moment between its creation and
  the flock; the lock is then on a file no longer there, so it is checked and
  a new name taken.
  """
  while True:
    path = os.path.join(base_dir, f'{TMP_PREFIX}{uuid.uuid4().hex}')
    lock = open(path + LOCK_SUFFIX, 'x')
    fcntl.flock(lock, fcntl.LOCK_EX)
    if _same_file(lock, path + LOCK_SUFFIX):
      lock.write(f'host {socket.gethostname()} pid {os.getpid()} since '
                 f'{datetime.datetime.now(datetime.timezone.utc).isoformat()}\n')
      lock.flush()
      return path, lock
    lock.close()


def remove_abandoned(base_dir: str) -> None:
  """Removes the temporaries whose writers are gone, and their lock files.

  A temporary directory without a lock file was left by an earlier release
  (which kept none) or by a clean-up cut short, so it is abandoned too.
  """
  try:
    entries = list(os.scandir(base_dir))
  except FileNotFoundError:
    return
  names = {e.name for e in entries}
  for name in sorted(n for n in names if is_temporary(n)):
    path = os.path.join(base_dir, name)
    if name.endswith(LOCK_SUFFIX):
      _remove_if_unlocked(path[:-len(LOCK_SUFFIX)])
    elif name + LOCK_SUFFIX not in names:
      shutil.rmtree(path, ignore_errors=True)
      _log.warning('removed %s, a temporary left without a lock', path)


def _remove_if_unlocked(path: str) -> None:
  """Removes `path` and its lock file if no live writer holds the lock."""
  try:
    lock = open(path + LOCK_SUFFIX, 'r+')
  except FileNotFoundError:
    return  # its writer just finished
  with lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
        return  # a live writer
      raise
    if not _same_file(lock, path + LOCK_SUFFIX):
      return
    holder = lock.read().strip()
    existed = os.path.exists(path)
    shutil.rmtree(path, ignore_errors=True)
    _unlink(path + LOCK_SUFFIX)
  if existed:
    _log.warning('removed %s, left by a writer that is gone (%s)', path,
                 holder or 'a writer that died before it signed')


def _same_file(f, path: str) -> bool:
  try:
    return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
  except FileNotFoundError:
    return False


def _unlink(path: str) -> None:
  with contextlib.suppress(FileNotFoundError):
    os.unlink(path)
