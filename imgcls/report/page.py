"""The report as one HTML page; figures are PNG files beside it.

Plain HTML with inline CSS and relative image links: the report directory
opens in any browser, can be copied or archived as a whole, and needs no
server. Every value from the run is escaped.
"""
import dataclasses
import datetime
import html
from typing import List, Optional

from imgcls.contract import names
from imgcls.imagedata import dataset_facts
from imgcls.pipeline import summary as run_summary
from imgcls.pipeline.results import RunResult
from imgcls.report import statistics
from imgcls.report.evaluation import TestErrors
from imgcls.report.statistics import Validation

TRAINING = 'training_curves.png'
CONFUSION = 'confusion_matrix.png'
PER_CLASS = 'per_class_accuracy.png'
MISCLASSIFIED = 'misclassified.png'
CLASS_SHARES = 'class_distribution.png'
FIGURES = (TRAINING, CONFUSION, PER_CLASS, MISCLASSIFIED, CLASS_SHARES)
# And one figure per image fact with more than one value (image_fact_figure).
IMAGE_FACTS_PREFIX = 'image_facts_'
# Image facts with one value, in words: (one, before), as a sentence.
_FACT_WORDS = {
    names.IMAGE_WIDTH_KEY: 'is {} pixels wide',
    names.IMAGE_HEIGHT_KEY: 'is {} pixels high',
    names.IMAGE_CHANNELS_KEY: 'has {} channel(s)',
    names.IMAGE_FORMAT_KEY: 'is a {} file',
    names.FILE_SIZE_KEY: 'is a file of {} bytes',
}
# A long list of skipped files would bury the rest of the report.
MAX_SKIPPED_SHOWN = 100

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 64em;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.good { color: #1a7f37; font-weight: bold; }
.bad { color: #b42318; font-weight: bold; }
.note { color: #666; }
code { font-size: 0.9em; }
img { max-width: 100%; }
"""


@dataclasses.dataclass
class Report:
  """Everything the page shows."""
  pipeline_root: str
  result: RunResult
  figures: List[str]  # the FIGURES drawn, as files beside the page
  errors: Optional[TestErrors]  # None when the run trained no model
  gate: List[str]  # the Evaluator's conditions for blessing
  # None when the run did not get as far as the DataValidator.
  validation: Optional[Validation] = None


def render(report: Report) -> str:
  result = report.result
  sections = [
      _outcome(report),
      _data(result),
      _data_validation(report),
      _training(report),
      _evaluation(report),
      _misclassified(report),
      _artifacts(result),
  ]
  generated = datetime.datetime.now().isoformat(timespec='seconds')
  return '\n'.join([
      '<!DOCTYPE html>',
      '<html lang="en"><head><meta charset="utf-8">',
      f'<title>imgcls run {_e(result.run_id)}</title>',
      f'<style>{_STYLE}</style></head><body>',
      f'<h1>Pipeline run {_e(result.run_id)}</h1>',
      f'<p class="note">Pipeline root <code>{_e(report.pipeline_root)}'
      f'</code>. Generated {generated}; <code>imgcls report --pipeline-root '
      f'{_e(report.pipeline_root)} --run {_e(result.run_id)}</code> makes it '
      f'again.</p>',
      *sections,
      '</body></html>',
  ])


def _outcome(report: Report) -> str:
  """The run summary `imgcls run` prints (pipeline.summary), and the gate."""
  rows = []
  for verdict in run_summary.verdicts(report.result):
    rows.append((_e(verdict.label), _verdict(verdict)))
    if verdict.label == run_summary.BLESSING:
      rows.append(('Blessed when', '; '.join(map(_e, report.gate)) or '-'))
  return _section('Outcome', _table(None, rows))


def _verdict(verdict: run_summary.Verdict) -> str:
  text = '<br>'.join(map(_e, (verdict.line, *verdict.details)))
  if verdict.passed is None:
    return text
  return f'<span class="{"good" if verdict.passed else "bad"}">{text}</span>'


def _data(result: RunResult) -> str:
  facts = result.dataset
  if facts is None:
    return _section('Data', _missing('no examples'))
  per_class = facts.examples_per_class
  splits = list(facts.examples)
  rows = [(_e(name), *(_num(per_class.get(s, {}).get(name)) for s in splits))
          for name in facts.class_names]
  rows.append(('<b>all</b>',
               *(f'<b>{_num(facts.examples[s])}</b>' for s in splits)))
  parts = [
      f'<p>Read from <code>{_e(facts.data_root)}</code>; the test split '
      f'comes from {_e(_test_source(facts))}.</p>',
      _table(['class', *splits], rows),
      _skipped(facts.skipped),
  ]
  return _section('Data', ''.join(parts))


def _data_validation(report: Report) -> str:
  """The gate before training: its verdict, every anomaly in TFDV's words,
  the distributions against the data accepted before, what was measured."""
  result, validation = report.result, report.validation
  if result.data_passed is None or validation is None:
    return _section('Data validation', _missing('no data validation'))
  if not result.data_anomalies:
    verdict = '<span class="good">no anomalies</span>'
  elif result.anomalies_accepted:
    verdict = ('<span class="bad">anomalies</span>, accepted with '
               '<code>--accept-anomalies</code>: trained on all the same')
  else:
    verdict = ('<span class="bad">refused</span>: nothing was trained. '
               '<code>--accept-anomalies</code>, or a schema edited to '
               'expect this data, lets it through.')
  anomalies = [(_e(a['split']), _e(a['feature']), _e(a['what']),
                _e(a['description'])) for a in result.data_anomalies]
  baseline = ('the data accepted before this run' if validation.previous
              else 'nothing yet (the first accepted data): no drift measured')
  measured = [(_e(m['feature']), _e(m['kind']), _e(m['measure']),
               _num(m['value'], '.4f'), _num(m['threshold'], '.4f'))
              for m in validation.measurements]
  body = (f'<p>{verdict}</p>' +
          (_table(['split', 'feature', 'anomaly', 'expected and found'],
                  anomalies) if anomalies else '') +
          f'<p>Drift is measured against {baseline}; skew between the train '
          f'and test splits.</p>' +
          _figure(report, CLASS_SHARES, 'share of each class in the train '
                  'split, beside the data accepted before') +
          _image_facts(report) +
          _table(['feature', 'compared', 'measure', 'value', 'threshold'],
                 measured))
  return _section('Data validation', body)


def image_fact_figure(feature: str) -> str:
  return f'{IMAGE_FACTS_PREFIX}{feature}.png'


def _image_facts(report: Report) -> str:
  """Facts with one value in words; the others as a figure each."""
  validation = report.validation
  stated = statistics.stated_facts(validation.current, validation.previous)
  sentences = []
  for name, (value, before) in stated.items():
    words = _FACT_WORDS[name].format(f'<b>{_e(value)}</b>')
    if before is not None and before != value:
      words += f' (in the data accepted before: {_e(before)})'
    sentences.append(f'<li>every train image {words}</li>')
  plotted = [_figure(report, image_fact_figure(name),
                     f'{name.replace("_", " ")} of the train split, as shares')
             for name in statistics.plotted_facts(validation.current,
                                                  validation.previous)]
  return ((f'<ul>{"".join(sentences)}</ul>' if sentences else '') +
          ''.join(plotted))


def _test_source(facts: dataset_facts.DatasetFacts) -> str:
  if facts.test_source == 'hash':
    return 'a hash of each path (no test folder)'
  span = facts.test_span
  return 'the test folder' + (f' of span {span}' if span is not None else '')


def _skipped(skipped: List[List[str]]) -> str:
  if not skipped:
    return '<p>No files were skipped.</p>'
  shown = skipped[:MAX_SKIPPED_SHOWN]
  more = len(skipped) - len(shown)
  rows = [(f'<code>{_e(path)}</code>', _e(reason)) for path, reason in shown]
  tail = (f'<p class="note">... and {more} more, all listed in the examples '
          f'artifact\'s dataset_info.json.</p>' if more else '')
  return (f'<h3>Skipped files ({len(skipped)})</h3>' +
          _table(['file', 'why'], rows) + tail)


def _training(report: Report) -> str:
  history = report.result.history
  if not history:
    return _section('Training', _missing('no training history'))
  epochs = len(next(iter(history.values())))
  last = [(_e(key), _num(values[-1], '.4f')) for key, values in history.items()]
  body = (_figure(report, TRAINING, 'loss and accuracy per epoch') +
          f'<p>{epochs} epoch(s). Last epoch (early stopping may have '
          f'restored an earlier one\'s weights):</p>' +
          _table(['metric', 'value'], last) +
          _hyperparameters(report.result.hyperparameters))
  return _section('Training', body)


def _hyperparameters(values: dict) -> str:
  if not values:
    return ''
  rows = [(_e(name), _e(value)) for name, value in sorted(values.items())]
  return ('<h3>Tuned hyperparameters</h3><p>Chosen by the Tuner (the best '
          'of its trials on validation accuracy) and trained with:</p>' +
          _table(['hyperparameter', 'value'], rows))


def _evaluation(report: Report) -> str:
  result = report.result
  if result.accuracy is None:
    return _section('Evaluation', _missing('no evaluation'))
  per_class = result.dataset.examples_per_class if result.dataset else {}
  test, train = per_class.get('test', {}), per_class.get('train', {})
  # The training counts beside the accuracy: a class that is rare in
  # training is the usual reason for a low one (see --class-weight).
  rows = [(_e(name), _percent(accuracy), _num(train.get(name)),
           _num(test.get(name)))
          for name, accuracy in result.per_class_accuracy.items()]
  body = (f'<p>Test accuracy {_percent(result.accuracy)}, computed by the '
          f'Evaluator (TFMA) through the model\'s serving signature.</p>' +
          _figure(report, CONFUSION, 'confusion matrix: rows are the actual '
                  'classes, columns the predicted ones') +
          _figure(report, PER_CLASS, 'accuracy per class') +
          _table(['class', 'accuracy', 'training images', 'test images'],
                 rows))
  return _section('Evaluation', body)


def _misclassified(report: Report) -> str:
  errors = report.errors
  if errors is None:
    return _section('Misclassified test images', _missing('no trained model'))
  summary = (f'<p>{errors.wrong} of {errors.count} test images misclassified '
             f'({errors.wrong / max(errors.count, 1):.2%})')
  if not errors.wrong:
    return _section('Misclassified test images', summary + '.</p>')
  rows = [(f'<code>{_e(m.path)}</code>', _e(m.true_name),
           _e(m.predicted_name), _percent(m.confidence))
          for m in errors.examples]
  body = (summary + f'; the first {len(errors.examples)} are shown.</p>' +
          _figure(report, MISCLASSIFIED, 'misclassified test images') +
          _table(['file', 'true', 'predicted', 'confidence'], rows))
  return _section('Misclassified test images', body)


def _artifacts(result: RunResult) -> str:
  rows = [(_e(key), f'<code>{_e(artifact.uri)}</code>')
          for key, artifact in sorted(result.artifacts.items())]
  return _section('Artifacts', _table(['output', 'URI'], rows))


def _figure(report: Report, name: str, caption: str) -> str:
  if name not in report.figures:
    return ''
  return (f'<figure><img src="{_e(name)}" alt="{_e(caption)}">'
          f'<figcaption class="note">{_e(caption)}</figcaption></figure>')


def _section(title: str, body: str) -> str:
  return f'<h2>{_e(title)}</h2>\n{body}'


def _missing(what: str) -> str:
  return f'<p class="note">This run produced {what}.</p>'


def _table(header: Optional[List[str]], rows) -> str:
  """Cells are HTML already; a header of None makes a key/value table."""
  lines = ['<table>']
  if header:
    lines.append('<tr>' + ''.join(f'<th>{_e(h)}</th>' for h in header) +
                 '</tr>')
  for row in rows:
    first, *rest = row
    cells = ''.join(
        f'<td class="num">{c}</td>' if _numeric(c) else f'<td>{c}</td>'
        for c in rest)
    tag = 'th' if header is None else 'td'
    lines.append(f'<tr><{tag}>{first}</{tag}>{cells}</tr>')
  lines.append('</table>')
  return '\n'.join(lines)


def _numeric(cell: str) -> bool:
  return cell.replace('.', '').replace('%', '').replace(',', '').isdigit()


def _percent(value: Optional[float]) -> str:
  return '-' if value is None else f'{value:.2%}'


def _num(value, fmt: str = ',') -> str:
  return '-' if value is None else format(value, fmt)


def _e(value) -> str:
  return html.escape(str(value))
