"""The pipeline image's Dockerfile, checked without building it.

tests/test_image.py builds the image and runs the pipeline in it, which shows
that it builds, installs the lock and runs as any uid. What a build cannot
show is read here: the base's tag pinned to a Debian with a glibc that TFX's
wheels accept, the same Keras mode as the local environment, what the build
context leaves out, and what Kubeflow and the retrain CronJob expect.
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


def _dockerignored(name):
  patterns = [line.strip() for line in
              (_REPO / '.dockerignore').read_text().splitlines()
              if line.strip() and not line.startswith('#')]
  return any(fnmatch.fnmatch(name, p.lstrip('/').removeprefix('**/'))
             for p in patterns)


def test_base_image_is_pinned_debian_13_with_new_enough_glibc():
  (base,) = _all('FROM')
  assert base == '${BASE_IMAGE}'
  (default,) = [a.split('=', 1)[1] for a in _all('ARG')
                if a.startswith('BASE_IMAGE=')]
  image, _, tag = default.partition(':')
  assert image == 'python'
  version, _, variant = tag.partition('-')
  assert re.fullmatch(r'3\.\d+\.\d+', version), f'unpinned tag {tag!r}'
  codename = variant.split('-')[-1]
  assert codename in _DEBIAN_GLIBC, f'no Debian release named in {tag!r}'
  assert _DEBIAN_GLIBC[codename] >= _MIN_GLIBC, codename


def test_the_default_build_is_the_gpu_variant():
  # docs/kubeflow.md: `docker build .` makes the image the Trainer's GPU
  # nodes need; --build-arg TENSORFLOW_EXTRA= the CPU-only one.
  assert 'TENSORFLOW_EXTRA=and-cuda' in _all('ARG')


def test_keras_mode_matches_the_local_environment():
  in_env = (_REPO / 'scripts' / 'in-env').read_text()
  (local,) = re.findall(r'^export TF_USE_LEGACY_KERAS=(\S+)$', in_env,
                        re.MULTILINE)
  assert _env()['TF_USE_LEGACY_KERAS'] == local == '1'


def test_build_context_drops_local_state():
  for dropped in ('.git', '.venv', '_work', 'data', 'tests', 'docs'):
    assert _dockerignored(dropped), dropped


def test_runs_as_the_non_root_user_the_cronjob_relies_on():
  (user,) = _all('USER')
  uid = user.split(':')[0]
  # Numeric, or Kubernetes' runAsNonRoot cannot verify the image's user.
  assert uid.isdigit() and int(uid) != 0
  cronjob = yaml.safe_load(
      (_REPO / 'kubernetes' / 'retrain' / 'cronjob.yaml').read_text())
  pod = cronjob['spec']['jobTemplate']['spec']['template']['spec']
  # The CronJob pins no uid, which a platform that assigns one would refuse:
  # it runs as the image's user, which runAsNonRoot checks.
  assert pod['securityContext']['runAsNonRoot'] is True
  assert 'runAsUser' not in pod['securityContext']


def test_leaves_the_entrypoint_to_kubeflow():
  # KFP sets each component's command (TFX's executor launcher), which
  # Kubernetes puts in place of any ENTRYPOINT; with none, `docker run IMAGE
  # python -m ...` runs a step's command unchanged outside Kubeflow too.
  assert not _all('ENTRYPOINT')
