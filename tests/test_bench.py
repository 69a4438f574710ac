"""The benchmark scripts keep working: every benchmark in quick mode, the data
file they write and the page rendered from it."""
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


def _write(tmp_path, results):
  """(the data file, the page) written for `results`."""
  paths = str(tmp_path / 'results.json'), str(tmp_path / 'b.md')
  doc.write(results, *paths)
  return paths


def _args(tmp_path, *args):
  return [*args, '--results', str(tmp_path / 'results.json'), '--out',
          str(tmp_path / 'b.md'), '--work-dir', str(tmp_path)]


def test_the_page_is_rendered_from_the_data_file(tmp_path):
  results = [_result('one'), _result('two', met=False)]
  data, page = _write(tmp_path, results)
  assert list(doc.load_results(data).values()) == results
  text = (tmp_path / 'b.md').read_text()
  assert text == doc.render(results)
  assert 'bench-results' not in text and '"figures"' not in text
  # Each row links to its benchmark's section, which says why once.
  row = ('| [{0}. Title {1}](#{0}-title-{1}) | speed | 2 x/s | 1 x/s (floor) '
         '| >= floor | {2} |')
  assert row.format(1, 'one', 'yes') in text
  assert row.format(2, 'two', '**no**') in text
  assert '## 2. Title two' in text and text.count('why two') == 1
  assert 'Quick mode' in text


def test_the_docs_page_is_the_rendering_of_the_recorded_results():
  """docs/benchmarks.md says what bench/results.json holds, no more."""
  with open(doc.PAGE, encoding='utf-8') as f:
    page = f.read()
  assert page == doc.render(list(doc.load_results(doc.RESULTS).values())), (
      'docs/benchmarks.md differs from bench/results.json: run '
      '`scripts/in-env python -m bench.doc`')
  assert list(doc.load_results(doc.RESULTS)) == list(bench_main.BENCHMARKS)


def test_only_measures_again_and_keeps_the_other_figures(tmp_path, monkeypatch):
  data, _ = _write(tmp_path, [_result('one', quick=False),
                              _result('two', quick=False)])
  fresh = _result('two', met=False, quick=False)
  monkeypatch.setattr(bench_main, 'BENCHMARKS', {
      'one': _fake('one'), 'two': _fake('two', fresh)})
  assert bench_main.main(_args(tmp_path, '--only', 'two')) == 0
  results = doc.load_results(data)
  assert results['one'] == _result('one', quick=False)
  assert results['two'] == fresh
  assert (tmp_path / 'b.md').read_text() == doc.render(list(results.values()))


def test_a_failing_benchmark_fails_the_run_but_not_the_others(
    tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(bench_main, 'BENCHMARKS', {
      'one': _fake('one'), 'two': _fake('two', _result('two'))})
  assert bench_main.main(_args(tmp_path, '--quick')) == 1
  assert 'one broke' in capsys.readouterr().err
  assert list(doc.load_results(str(tmp_path / 'results.json'))) == ['two']


def test_quick_mode_never_writes_the_docs(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(bench_main, 'BENCHMARKS',
                      {'one': _fake('one', _result('one'))})
  assert bench_main.main(['--quick', '--work-dir', str(tmp_path)]) == 0
  written = capsys.readouterr().out.rpartition('bench: wrote ')[2].split()
  data, page = written[0], written[-1]
  assert data != doc.RESULTS and data.endswith('results.json')
  assert page != doc.PAGE and page.endswith('benchmarks.md')


def test_line_fit_and_percentiles():
  slope, intercept = common.fit_line([(1000, 3.0), (10000, 12.0)])
  assert slope == pytest.approx(0.001) and intercept == pytest.approx(2.0)
  values = list(range(1, 101))
  assert common.percentile(values, 50) == 50
  assert common.percentile(values, 99) == 99
  assert common.percentile([7.0], 99) == 7.0


@pytest.mark.e2e
def test_every_benchmark_runs_in_quick_mode(tmp_path, capsys):
  out, data = tmp_path / 'benchmarks.md', tmp_path / 'results.json'
  assert bench_main.main(['--quick', '--out', str(out), '--results',
                          str(data), '--work-dir', str(tmp_path / 'work')]) == 0
  results = doc.load_results(str(data))
  assert list(results) == list(bench_main.BENCHMARKS)
  for result in results.values():
    assert result.quick and result.figures and result.machine['cores']
  page = out.read_text()
  assert 'Quick mode' in page
  assert 'imgcls.dev_server.server.ModelServer' in page  # the server is named
  assert f'wrote {data} and {out}' in capsys.readouterr().out
