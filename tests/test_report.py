"""Run reports: written after `imgcls run`, and again by `imgcls report`."""
import collections
import dataclasses
import io
import os
import re

from PIL import Image
import pytest

from imgcls import cli
from imgcls.components import gated_evaluator
from imgcls.contract import names, saved_model
from imgcls.imagedata import dataset_facts, sample_data
from imgcls.pipeline import local, results
from imgcls.pipeline.config import PipelineConfig
from imgcls.report import evaluation, figures, page, statistics, writer
from imgcls.trainer.config import TrainingConfig

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
PER_CLASS = {'train': 30, 'test': 10}
BROKEN = 'train/3/broken.png'


def _write_digits(root: str) -> None:
  """The first 30 train and 10 test digits of each class, and a broken file."""
  written = collections.Counter()
  for split, label, pixels in sample_data.digits_images():
    n = written[split, label]
    if n >= PER_CLASS[split]:
      continue
    written[split, label] += 1
    class_dir = os.path.join(root, split, str(label))
    os.makedirs(class_dir, exist_ok=True)
    Image.fromarray(pixels).save(os.path.join(class_dir, f'{n}.png'))
  with open(os.path.join(root, BROKEN), 'wb') as f:
    f.write(PNG_MAGIC + b'truncated')


def _config_args(paths) -> list:
  return ['--data-root', paths['data'], '--serving-dir', paths['serving'],
          '--pipeline-root', paths['pipeline'], '--epochs', '1',
          '--min-accuracy', '0']


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
  """One real pipeline run on 400 digits; (paths, its RunResult)."""
  root = tmp_path_factory.mktemp('report')
  paths = {name: str(root / name) for name in ('data', 'serving', 'pipeline')}
  _write_digits(paths['data'])
  result = local.run(
      PipelineConfig(paths['data'], paths['serving'], paths['pipeline'],
                     training=TrainingConfig(epochs=1), min_accuracy=0.0))
  return paths, result


def _images_of(report_path: str) -> list:
  with open(report_path, encoding='utf-8') as f:
    sources = re.findall(r'<img src="([^"]+)"', f.read())
  return [os.path.join(os.path.dirname(report_path), s) for s in sources]


def _assert_valid_png(path: str) -> None:
  with open(path, 'rb') as f:
    assert f.read(len(PNG_MAGIC)) == PNG_MAGIC, path
  with Image.open(path) as image:
    assert image.format == 'PNG'
    image.verify()


@pytest.mark.e2e
def test_report_shows_the_run_with_valid_figures(first_run):
  paths, result = first_run
  path = writer.write_report(paths['pipeline'], result.run_id)
  assert path == os.path.join(
      writer.report_dir(paths['pipeline'], result.run_id), 'report.html')
  images = _images_of(path)
  # The digits are all 28x28 grayscale PNGs: only their file sizes vary.
  assert sorted(map(os.path.basename, images)) == sorted(
      (*page.FIGURES, page.image_fact_figure('file_size')))
  for image in images:
    _assert_valid_png(image)
  with open(path, encoding='utf-8') as f:
    html = f.read()
  assert result.pushed_version == '1'
  assert '>pushed version 1: ' in html  # the summary imgcls run prints
  assert os.path.join(paths['serving'], 'LenetModel', '1') in html
  assert BROKEN in html  # the skipped file, with its reason
  assert 'blessed' in html and 'Served model (baseline)' in html
  assert 'SparseCategoricalAccuracy &gt;= 0' in html  # the gate


@pytest.mark.e2e
def test_the_data_section_states_single_values_and_draws_readable_figures(
    first_run):
  paths, result = first_run
  path = writer.write_report(paths['pipeline'], result.run_id)
  with open(path, encoding='utf-8') as f:
    html = f.read()
  section = html.split('<h2>Data validation</h2>')[1].split('<h2>')[0]
  for words in ('is <b>28</b> pixels wide', 'is <b>28</b> pixels high',
                'has <b>1</b> channel(s)', 'is a <b>PNG</b> file'):
    assert f'<li>every train image {words}</li>' in section
  figures = [os.path.join(os.path.dirname(path), name)
             for name in re.findall(r'<img src="([^"]+)"', section)]
  assert [os.path.basename(f) for f in figures] == [
      page.CLASS_SHARES, page.image_fact_figure('file_size')]
  # Shown at their own width, up to the text column's (img max-width 100%).
  (em,) = re.findall(r'body \{[^}]*max-width: (\d+)em', html)
  text_width = int(em) * 16  # px, at browsers' default font size
  assert 'img { max-width: 100%; }' in html
  for figure in figures:
    with Image.open(figure) as image:
      assert min(image.width, text_width) >= text_width / 2, figure


@pytest.mark.e2e
def test_misclassified_totals_are_the_evaluators_and_prediction_stops_early(
    first_run, monkeypatch):
  _, result = first_run
  model, examples = (result.uri(names.ARTIFACT_MODEL),
                     result.uri(names.ARTIFACT_EXAMPLES))
  class_names = result.dataset.class_names
  counts = gated_evaluator.confusion_matrix(
      result.uri(names.ARTIFACT_EVALUATION), len(class_names))
  # The matrix and TFMA's accuracy metric count the same predictions.
  assert counts.trace() / counts.sum() == pytest.approx(result.accuracy)
  assert result.per_class_accuracy == {
      name: pytest.approx(counts[c, c] / counts[c].sum())
      for c, name in enumerate(class_names)}
  every = evaluation.test_errors(model, examples, class_names, 1000)
  # Predicted here, counted by TFMA: the same model, the same answers.
  assert (every.count, every.wrong) == (counts.sum(),
                                        counts.sum() - counts.trace())
  assert 3 < every.wrong < every.count

  batches = []
  predict = saved_model.SavedClassifier.predict_examples
  monkeypatch.setattr(evaluation, '_BATCH', 10)
  monkeypatch.setattr(saved_model.SavedClassifier, 'predict_examples',
                      lambda self, batch: batches.append(batch) or
                      predict(self, batch))
  first = evaluation.test_errors(model, examples, class_names, 3, counts)
  assert first.examples == every.examples[:3]
  assert (first.count, first.wrong) == (every.count, every.wrong)
  assert len(batches) < every.count / 10  # stopped at the third error


def test_the_misclassified_grid_fits_long_class_names_and_any_image_size(
    tmp_path):
  def encoded(size, mode):
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, format='PNG')
    return out.getvalue()

  examples = [
      evaluation.Misclassified(encoded(size, mode), f'{n}.png', 'x' * 80,
                               'golden_retriever', 0.93)
      for n, (size, mode) in enumerate([((28, 28), 'L'), ((640, 480), 'RGB'),
                                        ((1, 300), 'RGBA')] * 3)
  ]
  path = str(tmp_path / page.MISCLASSIFIED)
  figures.misclassified_grid(examples, path)
  _assert_valid_png(path)
  with Image.open(path) as grid:
    assert grid.width == 8 * 160 and grid.height % 2 == 0


def test_image_facts_with_one_value_are_stated_the_others_plotted():
  one = statistics.Distributions(
      counts={'image_format': {'PNG': 10}},
      histograms={'image_width': [(28, 28, 10)],
                  'file_size': [(100, 200, 4), (200, 300, 6)]},
      single_values={'image_width': '28', 'image_format': 'PNG'})
  wider = dataclasses.replace(one, single_values={'image_width': '32',
                                                  'image_format': 'PNG'})
  assert statistics.stated_facts(one, None) == {
      'image_width': ('28', None), 'image_format': ('PNG', None)}
  assert statistics.plotted_facts(one, None) == ['file_size']
  assert statistics.stated_facts(one, wider)['image_width'] == ('28', '32')
  mixed = dataclasses.replace(one, single_values={'image_format': 'PNG'})
  assert statistics.plotted_facts(one, mixed) == ['image_width', 'file_size']


@pytest.mark.e2e
def test_imgcls_run_prints_the_report_of_its_run(first_run, capsys):
  paths, first = first_run
  assert cli.main(['run', *_config_args(paths)]) == 0
  out = capsys.readouterr().out
  latest = results.load_run(paths['pipeline'])
  assert latest.run_id != first.run_id
  expected = os.path.join(writer.report_dir(paths['pipeline'], latest.run_id),
                          'report.html')
  assert f'report: {expected}\n' in out
  assert os.path.isfile(expected)


@pytest.mark.e2e
def test_imgcls_report_recreates_the_latest_report(first_run, capsys):
  paths, _ = first_run
  latest = results.load_run(paths['pipeline'])
  expected = os.path.join(writer.report_dir(paths['pipeline'], latest.run_id),
                          'report.html')
  if os.path.exists(expected):
    os.remove(expected)
  assert cli.main(['report', '--pipeline-root', paths['pipeline'],
                   '--run', 'latest']) == 0
  assert capsys.readouterr().out == f'report: {expected}\n'
  for image in _images_of(expected):
    _assert_valid_png(image)


@pytest.mark.e2e
def test_imgcls_report_for_a_run_id(first_run, capsys):
  paths, first = first_run
  assert cli.main(['report', '--pipeline-root', paths['pipeline'],
                   '--run', first.run_id]) == 0
  path = capsys.readouterr().out.removeprefix('report: ').strip()
  assert path == os.path.join(
      writer.report_dir(paths['pipeline'], first.run_id), 'report.html')
  with open(path, encoding='utf-8') as f:
    assert f'Pipeline run {first.run_id}' in f.read()


@pytest.mark.e2e
def test_an_unknown_run_id_is_a_clean_error(first_run, capsys):
  paths, first = first_run
  assert cli.main(['report', '--pipeline-root', paths['pipeline'],
                   '--run', 'no-such-run']) == 2
  err = capsys.readouterr().err
  assert "imgcls report: error: no run 'no-such-run'" in err
  assert first.run_id in err  # the runs there are listed
  assert 'Traceback' not in err


def test_a_pipeline_root_without_metadata_is_a_clean_error(tmp_path, capsys):
  assert cli.main(['report', '--pipeline-root', str(tmp_path)]) == 2
  assert 'no pipeline metadata here' in capsys.readouterr().err


def test_a_run_that_stopped_early_renders_what_it_has():
  """A run that failed after the ExampleGen: no model, no evaluation."""
  facts = dataset_facts.DatasetFacts(
      data_root='/d', class_names=['a', 'b'], train_spans=[], test_span=None,
      test_source='folder', files={'train': 4, 'test': 1},
      examples={'train': 3, 'test': 1},
      examples_per_class={'train': {'a': 2, 'b': 1}, 'test': {'a': 1, 'b': 0}},
      skipped=[['train/a/<x>.png', 'bad']])
  result = results.RunResult(
      run_id='r1', artifacts={}, dataset=facts, accuracy=None,
      baseline_accuracy=None, baseline_version=None, per_class_accuracy={},
      blessed=None, blessing_reason='', contract_passed=None,
      contract_reason='', pushed_version=None, pushed_destination=None,
      already_published=None, history={})
  html = page.render(page.Report('/p', result, [], None, []))
  assert 'train/a/&lt;x&gt;.png' in html  # escaped
  assert 'This run produced no evaluation' in html
  assert 'This run produced no trained model' in html
  assert 'nothing pushed' in html and '<img' not in html
