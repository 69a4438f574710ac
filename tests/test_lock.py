"""requirements.lock: made from requirements.txt, and what is installed here.

scripts/lock writes the lock (scripts/lock.py); these checks are offline.
The image's side, the same comparison inside the built image, is in
tests/test_image.py.
"""
import importlib.util
import pathlib
import subprocess
import sys

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _load_lock_module():
  spec = importlib.util.spec_from_file_location('imgcls_lock',
                                                _REPO / 'scripts' / 'lock.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


lock = _load_lock_module()


def freeze_pins(lines):
  """{name: version} from `pip freeze --all` lines, the project left out."""
  found = {}
  for line in lines:
    # pip's comments (an editable checkout whose remote it cannot name, as in
    # a clone of a local path) are no pins.
    if line.startswith(('-e ', '#')) or ' @ ' in line or '==' not in line:
      continue
    name, _, version = line.partition('==')
    found[lock.canonical(name)] = version.strip()
  found.pop('imgcls', None)
  return found


def locked(*sections):
  found = {}
  for name in sections:
    found.update(lock.pins(lock.section(name)))
  return found


def test_lock_is_made_from_the_current_requirements_txt():
  assert lock.recorded_sha256() == lock.requirements_sha256(), (
      'requirements.txt changed since requirements.lock was made: run '
      'scripts/lock')


def test_every_direct_pin_is_in_its_section_at_its_version():
  direct = lock.direct_pins()
  for section in ('runtime', 'test'):
    pinned = lock.pins(lock.section(section))
    wrong = {name: (version, pinned.get(name))
             for name, version in direct[section].items()
             if pinned.get(name) != version}
    assert not wrong, f'[{section}] of requirements.lock: {wrong}'


def test_every_entry_has_hashes_and_sections_do_not_overlap():
  sections = {s: lock.section(s) for s in lock.SECTIONS}
  for name, text in sections.items():
    entries = [line for line in text.splitlines() if lock._PIN.match(line)]
    assert entries, name
    # Each entry is followed by its hashes: "pkg==1.0 \" then "--hash=...".
    assert all(entry.endswith('\\') for entry in entries), name
    assert text.count('--hash=sha256:') >= len(entries), name
  runtime, test, gpu = (set(lock.pins(sections[s])) for s in lock.SECTIONS)
  assert not runtime & test
  # The GPU section: tensorflow[and-cuda] at the pinned tensorflow, and the
  # CUDA wheels that its extra adds, nothing of the CPU environment.
  assert runtime & gpu == {'tensorflow'}
  assert lock.pins(sections['gpu'])['tensorflow'] == lock.pins(
      sections['runtime'])['tensorflow']
  assert 'tensorflow[and-cuda]==' in sections['gpu']
  assert all(n.startswith('nvidia-') for n in gpu - {'tensorflow'})
  # The test tools stay out of the image.
  assert {'pytest', 'kubernetes-validate'} <= test


def test_this_environment_is_the_lock():
  """`pip freeze` here: the runtime and test sections, nothing else."""
  frozen = subprocess.run(
      [sys.executable, '-m', 'pip', 'freeze', '--all'], capture_output=True,
      text=True, check=True).stdout.splitlines()
  have, want = freeze_pins(frozen), locked('runtime', 'test')
  assert {n: (have.get(n), want.get(n)) for n in set(have) | set(want)
          if have.get(n) != want.get(n)} == {}
