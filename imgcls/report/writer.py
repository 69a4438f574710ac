"""Writes a run's report: `<pipeline_root>/reports/<run id>/report.html`.

Everything is read back from MLMD and the run's artifacts, so a report can be
(re)made for any past run, by `imgcls run` right after the run or later by
`imgcls report`. A run that stopped early gets a report of what it has.
"""
import concurrent.futures
import os
import re
import shutil
from typing import List, Optional

from imgcls.contract import names
from imgcls.pipeline import results
from imgcls.report import evaluation, figures, page, statistics

REPORTS_DIR = 'reports'
REPORT_FILE = 'report.html'
# Enough misclassified images to see a pattern, few enough to look at.
MAX_MISCLASSIFIED = 32


def report_dir(pipeline_root: str, run_id: str) -> str:
  """Run IDs are timestamps with ':'; the directory name keeps it portable."""
  return os.path.join(pipeline_root, REPORTS_DIR,
                      re.sub(r'[^A-Za-z0-9._-]', '-', run_id))


def write_report(pipeline_root: str, run_id: str = 'latest') -> str:
  """Writes (or rewrites) the report of a run; returns the page's path.

  Raises:
    UserError: no metadata under pipeline_root, or no such run.
  """
  result = results.load_run(pipeline_root, run_id)
  out = report_dir(pipeline_root, result.run_id)
  # A fresh directory: a rewritten report never keeps stale figures.
  shutil.rmtree(out, ignore_errors=True)
  os.makedirs(out)
  evaluation_uri = result.uri(names.ARTIFACT_EVALUATION)
  validation = _validation(result)
  # The report's two costs overlap: predicting test images runs in
  # TensorFlow's kernels, which release the GIL, while matplotlib draws the
  # other figures on this thread.
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    predicted = pool.submit(_test_errors, result)
    drawn = _draw(result, out)
    distributions = _draw_distributions(validation, out)
    errors = predicted.result()
  if errors and errors.examples:
    figures.misclassified_grid(errors.examples,
                               os.path.join(out, page.MISCLASSIFIED))
    drawn.append(page.MISCLASSIFIED)
  report = page.Report(
      pipeline_root, result,
      figures=drawn + distributions,
      errors=errors,
      gate=evaluation.gate(evaluation_uri) if evaluation_uri else [],
      validation=validation)
  path = os.path.join(out, REPORT_FILE)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(page.render(report))
  return path


def _test_errors(result: results.RunResult
                ) -> Optional[evaluation.TestErrors]:
  model = result.uri(names.ARTIFACT_MODEL)
  examples = result.uri(names.ARTIFACT_EXAMPLES)
  if not (model and examples):
    return None
  return evaluation.test_errors(model, examples,
                                result.dataset.class_names,
                                MAX_MISCLASSIFIED, result.confusion_matrix)


def _validation(result: results.RunResult
               ) -> Optional[statistics.Validation]:
  statistics_uri = result.uri(names.ARTIFACT_STATISTICS)
  anomalies_uri = result.uri(names.ARTIFACT_ANOMALIES)
  if not (statistics_uri and anomalies_uri):
    return None
  return statistics.validation(statistics_uri, anomalies_uri)


def _draw_distributions(validation: Optional[statistics.Validation],
                        out: str) -> List[str]:
  """The train split's distributions, over the previous accepted data's."""
  if validation is None:
    return []
  current, previous = validation.current, validation.previous
  figures.class_distribution(
      current.counts.get(names.LABEL_NAME_KEY, {}),
      previous.counts.get(names.LABEL_NAME_KEY, {}) if previous else None,
      os.path.join(out, page.CLASS_SHARES))
  drawn = [page.CLASS_SHARES]
  for name in statistics.plotted_facts(current, previous):
    drawn.append(page.image_fact_figure(name))
    figures.image_fact(name, current, previous, os.path.join(out, drawn[-1]))
  return drawn


def _draw(result: results.RunResult, out: str) -> List[str]:
  """Draws the figures the run has data for, but the misclassified images;
  returns their file names."""
  drawn = []

  def draw(name, function, *args):
    function(*args, os.path.join(out, name))
    drawn.append(name)

  if result.history:
    draw(page.TRAINING, figures.training_curves, result.history)
  if result.confusion_matrix is not None:
    draw(page.CONFUSION, figures.confusion_matrix, result.confusion_matrix,
         result.dataset.class_names)
  if result.per_class_accuracy:
    draw(page.PER_CLASS, figures.per_class_accuracy, result.per_class_accuracy)
  return drawn
