"""The pipeline image's Dockerfile, checked without building it.

No Docker engine is needed: these tests read the Dockerfile and hold it to the
local environment it must match (the same pinned requirements, a glibc that
TFX's wheels accept, the same Keras mode) and to what Kubeflow and the retrain
CronJob expect of it.
"""
import fnmatch
import pathlib
import re
import shlex

import yaml

_REPO = pathlib.Path(__file__).resolve().parents[1]
# glibc of the Debian releases the official python images are built on. TFX
# 1.21's ml-metadata and TFDV wheels need 2.39 or newer.
_DEBIAN_GLIBC = {'bullseye': (2, 31), 'bookworm': (2, 36), 'trixie': (2, 41)}
_MIN_GLIBC = (2, 39)


def _instructions(path=_REPO / 'Dockerfile'):
  """(INSTRUCTION, arguments) pairs, with continuations joined and comment
  lines dropped, as Docker reads them."""
  logical, pending = [], ''
  for line in path.read_text().splitlines():
    if line.lstrip().startswith('#') or not line.strip():
      continue
    if line.rstrip().endswith('\\'):
      pending += line.rstrip()[:-1] + ' '
      continue
    logical.append(pending + line.strip())
    pending = ''
  assert not pending, 'the Dockerfile ends inside a continued line'
  return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1])
          for text in logical]


def _all(instruction):
  return [args for name, args in _instructions() if name == instruction]


def _env():
  """Variables set by ENV (KEY=VALUE pairs), by name."""
  variables = {}
  for args in _all('ENV'):
    for pair in shlex.split(args):
      key, _, value = pair.partition('=')
      variables[key] = value
  return variables


def _copy_sources():
  """What COPY takes from the build context (not from other stages)."""
  sources = []
  for args in _all('COPY'):
    words = shlex.split(args)
    if any(w.startswith('--from') for w in words):
      continue
    sources += [w for w in words[:-1] if not w.startswith('--')]
  return sources


def _dockerignored(name):
  patterns = [line.strip() for line in
              (_REPO / '.dockerignore').read_text().splitlines()
              if line.strip() and not line.startswith('#')]
  return any(fnmatch.fnmatch(name, p.lstrip('/').removeprefix('**/'))
             for p in patterns)


def test_base_image_is_pinned_debian_13_with_new_enough_glibc():
  (base,) = _all('FROM')
  image, _, tag = base.partition(':')
  assert image == 'python'
  version, _, variant = tag.partition('-')
  assert re.fullmatch(r'3\.\d+\.\d+', version), f'unpinned tag {tag!r}'
  codename = variant.split('-')[-1]
  assert codename in _DEBIAN_GLIBC, f'no Debian release named in {tag!r}'
  assert _DEBIAN_GLIBC[codename] >= _MIN_GLIBC, codename


def test_installs_pinned_requirements_then_the_project_without_deps():
  runs = ' && '.join(_all('RUN'))
  requirements = re.search(r'pip install -r (\S+)', runs)
  assert requirements, 'no pip install -r'
  assert pathlib.PurePosixPath(requirements[1]).name == 'requirements.txt'
  project = re.search(r'pip install --no-deps (\S+)', runs)
  assert project, 'the project is not installed with --no-deps'
  # Dependencies come only from the pinned file, and in an earlier layer.
  assert requirements.start() < project.start()
  assert 'requirements.txt' in _copy_sources()


def test_gpu_libraries_follow_the_pinned_tensorflow():
  runs = ' && '.join(_all('RUN'))
  cuda = re.search(r'pip install -c (\S+) "tensorflow\[\$TENSORFLOW_EXTRA\]"',
                   runs)
  assert cuda, 'tensorflow[and-cuda] is not constrained by the pinned file'
  assert pathlib.PurePosixPath(cuda[1]).name == 'requirements.txt'
  assert 'ARG TENSORFLOW_EXTRA=and-cuda' in (_REPO / 'Dockerfile').read_text()


def test_keras_mode_matches_the_local_environment():
  in_env = (_REPO / 'scripts' / 'in-env').read_text()
  (local,) = re.findall(r'^export TF_USE_LEGACY_KERAS=(\S+)$', in_env,
                        re.MULTILINE)
  assert _env()['TF_USE_LEGACY_KERAS'] == local == '1'


def test_copied_files_exist_and_reach_the_build():
  for source in _copy_sources():
    assert (_REPO / source).exists(), source
    if source != '.':
      assert not _dockerignored(source), source


def test_build_context_keeps_sources_and_drops_local_state():
  for kept in ['requirements.txt', 'setup.py'] + [
      p.parent.name for p in _REPO.glob('*/__init__.py')
      # Neither is installed: setup.py packages neither.
      if p.parent.name not in ('tests', 'bench')]:
    assert not _dockerignored(kept), kept
  for dropped in ('.git', '.venv', '_work', 'data'):
    assert _dockerignored(dropped), dropped


def test_runs_as_the_non_root_user_the_cronjob_expects():
  (user,) = _all('USER')
  uid = user.split(':')[0]
  # Numeric, or Kubernetes' runAsNonRoot cannot verify the image's user.
  assert uid.isdigit() and int(uid) != 0
  cronjob = yaml.safe_load(
      (_REPO / 'kubernetes' / 'retrain' / 'cronjob.yaml').read_text())
  pod = cronjob['spec']['jobTemplate']['spec']['template']['spec']
  assert pod['securityContext']['runAsUser'] == int(uid)


def test_leaves_the_entrypoint_to_kubeflow():
  # KFP sets each component's command (TFX's executor launcher), which
  # Kubernetes puts in place of any ENTRYPOINT; with none, `docker run IMAGE
  # python -m ...` runs a step's command unchanged outside Kubeflow too.
  assert not _all('ENTRYPOINT')
