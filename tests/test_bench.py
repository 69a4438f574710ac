"""The benchmark scripts keep working: every benchmark in quick mode, and the
page they write."""
import types

import pytest

from bench import __main__ as bench_main
from bench import common, doc


def _result(name, met=True, quick=True) -> common.Result:
  return common.Result(
      name=name, title=f'Title {name}', setup='setup',
      figures=[
          common.Figure('speed', 2.0, 'x/s', 'floor', 1.0, '>= floor', met),
          common.Figure('size', 3.0, 'MB'),
      ],
      details=[['a', 'b'], ['1', '2']], notes=[f'why {name}'],
      machine={'date': 'today', 'cpu': 'cpu', 'cores': '2'}, quick=quick)


def _fake(name, result=None):
  """A benchmark module whose run returns `result`, or raises without one."""

  def run(session):
    del session
    if result is None:
      raise RuntimeError(f'{name} broke')
    return result

  return types.SimpleNamespace(NAME=name, run=run)


def test_the_page_round_trips_its_results(tmp_path):
  path = str(tmp_path / 'b.md')
  results = [_result('one'), _result('two', met=False)]
  doc.write(path, results)
  assert list(doc.load_results(path).values()) == results
  page = (tmp_path / 'b.md').read_text()
  row = '| {} | Title {} | speed | 2 x/s | 1 x/s (floor) | >= floor | {} |'
  assert row.format(1, 'one', 'yes') in page
  assert row.format(2, 'two', '**no**') in page
  assert '- **2. Title two** (speed): why two' in page
  assert '## 3. GPU' in page and 'No GPU' in page
  assert 'Quick mode' in page


def test_only_measures_again_and_keeps_the_other_figures(tmp_path, monkeypatch):
  path = str(tmp_path / 'b.md')
  doc.write(path, [_result('one', quick=False), _result('two', quick=False)])
  fresh = _result('two', met=False, quick=False)
  monkeypatch.setattr(bench_main, 'BENCHMARKS', {
      'one': _fake('one'), 'two': _fake('two', fresh)})
  assert bench_main.main(['--only', 'two', '--out', path,
                          '--work-dir', str(tmp_path)]) == 0
  results = doc.load_results(path)
  assert results['one'] == _result('one', quick=False)
  assert results['two'] == fresh


def test_a_failing_benchmark_fails_the_run_but_not_the_others(
    tmp_path, monkeypatch, capsys):
  path = str(tmp_path / 'b.md')
  monkeypatch.setattr(bench_main, 'BENCHMARKS', {
      'one': _fake('one'), 'two': _fake('two', _result('two'))})
  assert bench_main.main(['--quick', '--out', path,
                          '--work-dir', str(tmp_path)]) == 1
  assert 'one broke' in capsys.readouterr().err
  assert list(doc.load_results(path)) == ['two']


def test_quick_mode_never_writes_the_docs(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(bench_main, 'BENCHMARKS',
                      {'one': _fake('one', _result('one'))})
  assert bench_main.main(['--quick', '--work-dir', str(tmp_path)]) == 0
  written = capsys.readouterr().out.rpartition('bench: wrote ')[2].strip()
  assert written != bench_main.DOC and written.endswith('benchmarks.md')


def test_line_fit_and_percentiles():
  slope, intercept = common.fit_line([(1000, 3.0), (10000, 12.0)])
  assert slope == pytest.approx(0.001) and intercept == pytest.approx(2.0)
  values = list(range(1, 101))
  assert common.percentile(values, 50) == 50
  assert common.percentile(values, 99) == 99
  assert common.percentile([7.0], 99) == 7.0


@pytest.mark.e2e
def test_every_benchmark_runs_in_quick_mode(tmp_path, capsys):
  out = tmp_path / 'benchmarks.md'
  assert bench_main.main(['--quick', '--out', str(out), '--work-dir',
                          str(tmp_path / 'work')]) == 0
  results = doc.load_results(str(out))
  assert list(results) == list(bench_main.BENCHMARKS)
  for result in results.values():
    assert result.quick and result.figures and result.machine['cores']
  page = out.read_text()
  assert 'Quick mode' in page
  assert 'imgcls.dev_server.server.ModelServer' in page  # the server is named
  assert f'wrote {out}' in capsys.readouterr().out
