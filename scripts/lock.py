"""Writes requirements.lock: every package of every environment, pinned, with
hashes, resolved from requirements.txt.   Run it as scripts/lock.

requirements.txt names the direct dependencies (runtime, then "# Test tools").
pip-tools resolves them twice in a throwaway venv, with and without the
GPU variant's `tensorflow[and-cuda]`, and this script writes one file in three
sections, each a pip requirements file of its own:

  # [runtime]  what the image and the local environment run
  # [test]     what only the test tools need ([dev] extra): local and CI
  # [gpu]      tensorflow[and-cuda]'s CUDA wheels: the image's GPU variant

The header records requirements.txt's sha256; tests/test_lock.py fails when
requirements.txt no longer matches it. Sections are read by section() below
and by the Dockerfile's and scripts/in-env's awk one-liner.
"""
import hashlib
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / 'requirements.txt'
LOCK = REPO / 'requirements.lock'
PIP_TOOLS = 'pip-tools==7.5.1'
SECTIONS = ('runtime', 'test', 'gpu')
_PIN = re.compile(r'^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)')


def canonical(name):
  return re.sub(r'[-_.]+', '-', name).lower()


def requirements_sha256(path=REQUIREMENTS):
  return hashlib.sha256(path.read_bytes()).hexdigest()


def direct_pins(path=REQUIREMENTS):
  """{'runtime': {name: version}, 'test': {...}} from requirements.txt."""
  pins, current = {'runtime': {}, 'test': {}}, 'runtime'
  for line in path.read_text().splitlines():
    line = line.strip()
    if line.startswith('# Test tools'):
      current = 'test'
    elif line and not line.startswith('#'):
      match = _PIN.match(line)
      assert match, f'not pinned with ==: {line}'
      pins[current][canonical(match[1])] = match[3]
  return pins


def section(name, path=LOCK):
  """The text of one section of the lock: a requirements file by itself."""
  out, current = [], None
  for line in path.read_text().splitlines():
    if line.startswith('# ['):
      current = line[3:line.index(']')]
    elif current == name:
      out.append(line)
  return '\n'.join(out) + '\n'


def pins(text):
  """{name: version} of the entries of a requirements text."""
  return {canonical(m[1]): m[3] for m in map(_PIN.match, text.splitlines())
          if m}


def recorded_sha256(path=LOCK):
  match = re.search(r'^# requirements\.txt sha256: ([0-9a-f]{64})$',
                    path.read_text(), re.MULTILINE)
  return match and match[1]


# ----------------------------------------------------------------- writing --


def _blocks(compiled):
  """{name: (text, vias)} of pip-compile's entries (pin, hashes, via)."""
  blocks, name = {}, None
  for line in compiled.splitlines():
    match = _PIN.match(line)
    if match:
      name = canonical(match[1])
      blocks[name] = [[line], []]
    elif name and line.startswith(' '):
      blocks[name][0].append(line)
      via = line.strip().removeprefix('#').strip()
      if via.startswith('via '):
        via = via[4:]
      if via and not via.startswith(('--hash', 'via')) and (
          line.strip().startswith('#')):
        blocks[name][1].append(canonical(via.split()[0])
                               if not via.startswith('-r') else via)
    elif not line.strip() or line.startswith('#'):
      continue
    else:
      raise SystemExit(f'lock: unexpected pip-compile line: {line}')
  return {n: ('\n'.join(text), vias) for n, (text, vias) in blocks.items()}


def _compile(venv, workdir, lines, output):
  source = pathlib.Path(workdir) / 'requirements.txt'
  source.write_text('\n'.join(lines) + '\n')
  subprocess.run(
      [os.path.join(venv, 'bin', 'pip-compile'), '--quiet',
       '--generate-hashes', '--allow-unsafe', '--strip-extras',
       '--no-emit-index-url', '--resolver=backtracking', '--rebuild',
       '--output-file', output, 'requirements.txt'],
      cwd=workdir, check=True)
  return _blocks(pathlib.Path(workdir, output).read_text())


def write_lock():
  if sys.version_info[:2] != (3, 13) or sys.platform != 'linux':
    raise SystemExit('lock: run it with Python 3.13 on Linux, as '
                     'scripts/lock does, the Python of the image')
  direct = direct_pins()
  lines = [line for line in REQUIREMENTS.read_text().splitlines()
           if line.strip() and not line.startswith('#')]
  tf_version = direct['runtime']['tensorflow']
  with tempfile.TemporaryDirectory(prefix='imgcls-lock-') as work:
    venv = os.path.join(work, 'venv')
    subprocess.run([sys.executable, '-m', 'venv', venv], check=True)
    subprocess.run([os.path.join(venv, 'bin', 'pip'), 'install', '-q',
                    PIP_TOOLS], check=True)
    every = _compile(venv, work, lines, 'all.txt')
    with_cuda = _compile(venv, work,
                         lines + [f'tensorflow[and-cuda]=={tf_version}'],
                         'gpu.txt')
  # Runtime: the direct runtime pins and all that they pull in.
  runtime = set(direct['runtime'])
  while True:
    more = {n for n, (_, vias) in every.items()
            if n not in runtime and any(v in runtime for v in vias)}
    if not more:
      break
    runtime |= more
  changed = {n for n in every if n in with_cuda and pins(every[n][0]) !=
             pins(with_cuda[n][0])}
  if changed:
    raise SystemExit(f'lock: the GPU resolve moves {sorted(changed)}')
  tf_block = every['tensorflow'][0].replace(
      f'tensorflow=={tf_version}', f'tensorflow[and-cuda]=={tf_version}', 1)
  tf_block = '\n'.join(line for line in tf_block.splitlines()
                       if not line.strip().startswith('#'))
  body = {
      'runtime': [every[n][0] for n in sorted(runtime)],
      'test': [every[n][0] for n in sorted(set(every) - runtime)],
      'gpu': [tf_block + '\n    # installs the CUDA wheels below'] + [
          with_cuda[n][0] for n in sorted(set(with_cuda) - set(every))],
  }
  titles = {
      'runtime': 'the image and the local environment',
      'test': 'the test tools ([dev] extra): the local environment and CI',
      'gpu': 'tensorflow[and-cuda]: what the image\'s GPU variant adds',
  }
  python = platform.python_version()
  header = f"""\
# Every package of the environments, pinned, with hashes. Generated from
# requirements.txt by scripts/lock ({PIP_TOOLS}, Python {python}, Linux
# x86_64); do not edit. After editing requirements.txt, run scripts/lock.
# requirements.txt sha256: {requirements_sha256()}
#
# Three sections, each a requirements file by itself (pip install
# --require-hashes); scripts/in-env installs runtime + test, the Dockerfile
# runtime, then gpu for the CUDA variant.
"""
  text = header + ''.join(
      f'\n# [{s}] {titles[s]}\n' + '\n'.join(body[s]) + '\n' for s in SECTIONS)
  LOCK.write_text(text)
  print(f'lock: wrote {LOCK.name}: ' + ', '.join(
      f'{len(body[s])} {s}' for s in SECTIONS), file=sys.stderr)


if __name__ == '__main__':
  write_lock()
