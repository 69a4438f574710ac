"""The benchmark results as data, and the page that renders them.

`bench/results.json` holds every benchmark's figures, setup and notes, so
`python -m bench --only NAME` measures one again and keeps the others as they
were. `docs/benchmarks.md` is rendered from that file alone:
`python -m bench.doc` renders it again after a change here.
"""
import dataclasses
import json
import os
import re
import sys
from typing import Dict, List, Sequence

from bench.common import Figure, Result, fmt

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(_REPO, 'bench', 'results.json')
PAGE = os.path.join(_REPO, 'docs', 'benchmarks.md')


def load_results(path: str) -> Dict[str, Result]:
  """The results recorded in a data file, by benchmark name."""
  if not os.path.exists(path):
    return {}
  with open(path, encoding='utf-8') as f:
    items = json.load(f)
  results = {}
  for item in items:
    item['figures'] = [Figure(**figure) for figure in item['figures']]
    results[item['name']] = Result(**item)
  return results


def write(results: Sequence[Result], results_path: str,
          page_path: str) -> None:
  """The data file, then the page rendered from it."""
  payload = json.dumps([dataclasses.asdict(r) for r in results], indent=1,
                       ensure_ascii=False)
  _write_text(results_path, payload + '\n')
  _write_text(page_path, render(results))


def _write_text(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)


def render(results: Sequence[Result]) -> str:
  lines = [
      '# Benchmarks',
      '',
      'Rendered from [bench/results.json](../bench/results.json) by '
      '`bench/doc.py`. `make bench` (`scripts/in-env python -m bench`; one '
      'benchmark: `--only NAME`) measures them again: at full size it needs '
      'MNIST\'s IDX files (`../shared/data/mnist`, or `--mnist-dir`) and '
      'takes about an hour on 2 cores; `--quick` only checks that the '
      'scripts work. Each figure is measured in the same run as its floor '
      'or peer, one after the other on the same machine, taking turns where '
      'a benchmark repeats. Other work on a shared machine slows what is '
      'measured, so repeated figures are the best of their runs, and each '
      'benchmark records its machine, date, load average and commit.',
      '',
  ]
  if any(r.quick for r in results):
    lines += ['**Quick mode: tiny data and 1-2 epochs, to keep the scripts '
              'working. These figures mean nothing.**', '']
  lines += _summary(results)
  for number, result in enumerate(results, 1):
    lines += _section(number, result)
  return '\n'.join(lines)


def _summary(results: Sequence[Result]) -> List[str]:
  lines = [
      '## Summary', '',
      'Each benchmark links to its section: how it was measured, on what '
      'machine, the raw figures, and why a target is missed.', '',
      '| Benchmark | Figure | Measured | Floor / peer | Target | Met |',
      '|---|---|---|---|---|---|'
  ]
  for number, result in enumerate(results, 1):
    title = _title(number, result)
    for figure in result.figures:
      peer = (f'{fmt(figure.peer_value)} {figure.unit} ({figure.peer_name})'
              if figure.peer_value is not None else '')
      lines.append(
          f'| [{title}](#{_anchor(title)}) | {figure.name} | '
          f'{fmt(figure.value)} {figure.unit} | {peer} | {figure.target} | '
          f'{_met(figure.met)} |')
  return lines + ['']


def _met(met) -> str:
  return {True: 'yes', False: '**no**', None: ''}[met]


def _title(number: int, result: Result) -> str:
  return f'{number}. {result.title}'


def _anchor(heading: str) -> str:
  """The anchor GitHub gives a heading."""
  return re.sub(r'[^\w\- ]', '', heading.lower()).replace(' ', '-')


def _section(number: int, result: Result) -> List[str]:
  machine = result.machine
  lines = [
      f'## {_title(number, result)}', '',
      result.setup, '',
      f'Measured {machine.get("date")} on {machine.get("cpu")}, '
      f'{machine.get("cores")} cores, {machine.get("memory")} memory, GPU: '
      f'{machine.get("gpu", "none")}; load average (1, 5, 15 min) '
      f'{machine.get("load at start")} at the start, '
      f'{machine.get("load at end")} at the end; '
      f'Python {machine.get("python")}; code at commit '
      f'{machine.get("commit", "unknown")}.', '',
  ]
  if result.details:
    header, *rows = result.details
    lines += ['| ' + ' | '.join(header) + ' |',
              '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    lines.append('')
  lines += [note + '\n' for note in result.notes]
  return lines


def main() -> int:
  """Renders the page again from the data file, measuring nothing."""
  _write_text(PAGE, render(list(load_results(RESULTS).values())))
  print(f'bench.doc: wrote {os.path.relpath(PAGE, _REPO)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
