"""docs/benchmarks.md: the figures beside their targets, and why any is missed.

The page ends with the results as JSON in an HTML comment (invisible when
rendered), so `python -m bench --only NAME` can measure one benchmark again
and rewrite the page with the others' figures as they were.
"""
import dataclasses
import json
import os
import re
from typing import Dict, List, Sequence

from bench.common import Figure, Result, fmt

_RESULTS = re.compile(r'<!-- bench-results\n(.*?)\n-->', re.DOTALL)


def load_results(path: str) -> Dict[str, Result]:
  """The results recorded in an earlier page, by benchmark name."""
  if not os.path.exists(path):
    return {}
  with open(path, encoding='utf-8') as f:
    match = _RESULTS.search(f.read())
  if not match:
    return {}
  results = {}
  for item in json.loads(match.group(1)):
    item['figures'] = [Figure(**figure) for figure in item['figures']]
    results[item['name']] = Result(**item)
  return results


def write(path: str, results: Sequence[Result]) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(render(results))


def render(results: Sequence[Result]) -> str:
  quick = any(r.quick for r in results)
  lines = [
      '# Benchmarks',
      '',
      'Written by `make bench` (`scripts/in-env python -m bench`; one '
      'benchmark: `--only NAME`). Each figure is measured in the same run as '
      'its floor or peer, one after the other on the same machine, taking '
      'turns where a benchmark repeats. The machine, date and load average '
      'are recorded with each benchmark: other work on a shared machine '
      'slows what is measured, so repeated figures are the best of their '
      'runs.',
      '',
  ]
  if quick:
    lines += ['**Quick mode: tiny data and 1-2 epochs, to keep the scripts '
              'working. These figures mean nothing.**', '']
  lines += _summary(results)
  lines += _not_met(results)
  for number, result in enumerate(results, 1):
    lines += _section(number, result)
  lines += _gpu(len(results) + 1, results)
  payload = json.dumps([dataclasses.asdict(r) for r in results], indent=1)
  lines += ['', f'<!-- bench-results\n{payload}\n-->', '']
  return '\n'.join(lines)


def _summary(results: Sequence[Result]) -> List[str]:
  lines = [
      '## Summary', '',
      '| # | Benchmark | Figure | Measured | Floor / peer | Target | Met |',
      '|---|---|---|---|---|---|---|'
  ]
  for number, result in enumerate(results, 1):
    for figure in result.figures:
      peer = (f'{fmt(figure.peer_value)} {figure.unit} ({figure.peer_name})'
              if figure.peer_value is not None else '')
      lines.append(
          f'| {number} | {result.title} | {figure.name} | '
          f'{fmt(figure.value)} {figure.unit} | {peer} | {figure.target} | '
          f'{_met(figure.met)} |')
  return lines + ['']


def _met(met) -> str:
  return {True: 'yes', False: '**no**', None: ''}[met]


def _not_met(results: Sequence[Result]) -> List[str]:
  missed = [(n, r) for n, r in enumerate(results, 1)
            if any(f.met is False for f in r.figures)]
  lines = ['## Targets not met', '']
  if not missed:
    return lines + ['None: every target above is met.', '']
  for number, result in missed:
    names = ', '.join(f.name for f in result.figures if f.met is False)
    lines.append(f'- **{number}. {result.title}** ({names}): ' +
                 ' '.join(result.notes))
  return lines + ['']


def _section(number: int, result: Result) -> List[str]:
  machine = result.machine
  lines = [
      f'## {number}. {result.title}', '',
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


def _gpu(number: int, results: Sequence[Result]) -> List[str]:
  gpus = sorted({r.machine.get('gpu', 'none') for r in results} - {'none'})
  text = (f'These figures were measured with a GPU: {", ".join(gpus)}.'
          if gpus else
          'No GPU: the machine these figures come from has none '
          '(TensorFlow lists no GPU device), so every figure above is '
          'CPU-only and nothing here says how the pipeline does on a GPU. '
          'The GPU check is done elsewhere, on a machine that has one.')
  return [f'## {number}. GPU', '', text, '']
