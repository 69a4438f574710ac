"""The run summary: one model, printed by `imgcls run` and shown in the
report."""
from imgcls.pipeline import local, results
from imgcls.pipeline import summary as run_summary
from imgcls.report import page
from tests import artifacts


def _result(**changes) -> results.RunResult:
  values = dict(
      run_id='r1', artifacts={},
      dataset=artifacts.dataset_facts_of({'train': {'a': 8, 'b': 8},
                                          'test': {'a': 2, 'b': 2}}),
      accuracy=0.95, baseline_accuracy=0.9, baseline_version=2,
      per_class_accuracy={'a': 1.0, 'b': 0.9}, blessed=True,
      blessing_reason='passed', contract_passed=True, contract_reason='passed',
      pushed_version='3', pushed_destination='/serving/LenetModel/3',
      already_published=None, history={'loss': [0.5, 0.2]},
      data_passed=False, data_anomalies=[{
          'split': 'train', 'feature': 'label_name', 'what': 'new value',
          'description': 'c appeared'}], anomalies_accepted=True)
  values.update(changes)
  return results.RunResult(**values)


def test_imgcls_run_prints_each_step_that_decided():
  text = local.summary(_result())
  lines = text.splitlines()
  assert lines[0] == 'run r1'
  assert lines[1] == ('  examples: train 16, test 4 (test split from '
                      'folder), 0 files skipped')
  assert lines[2].startswith('  data validation: anomalies ACCEPTED')
  assert lines[3].startswith('    ') and 'c appeared' in lines[3]
  assert lines[4:] == [
      '  accuracy: 0.9500 against baseline v2 0.9000', '  blessed: passed',
      '  contract check: passed',
      '  pushed version 3: /serving/LenetModel/3']


def test_each_component_ends_with_its_part_in_one_line():
  result = _result()
  assert run_summary.component_text(result, 'GatedEvaluator') == (
      'accuracy: 0.9500 against baseline v2 0.9000; blessed: passed')
  assert run_summary.component_text(result, 'Trainer') == (
      '2 epochs; last: loss 0.2000')
  assert run_summary.component_text(result, 'Transform') == ''


def test_the_report_shows_the_same_verdicts():
  result = _result(pushed_version=None, blessed=False,
                   blessing_reason='accuracy below 0.99')
  html = page.render(page.Report('/p', result, ['accuracy >= 0.99'], None, []))
  for line in local.summary(result).splitlines()[1:]:
    assert page.html.escape(line.strip()) in html
  assert '<span class="bad">NOT blessed: accuracy below 0.99</span>' in html
  assert '<span class="bad">nothing pushed</span>' in html
