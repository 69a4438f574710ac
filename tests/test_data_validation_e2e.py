"""The data validation gate in real pipeline runs (LocalDagRunner), on spans.

span-1 is trained on and accepted; span-2, drawn the same way, passes; span-3
brings one class at ten times its share and is refused before training by
`imgcls run`, then let through by --accept-anomalies. The report shows the
distributions and the anomalies.
"""
import os

import pytest

from imgcls import cli
from imgcls.contract import names
from imgcls.pipeline import local
from imgcls.pipeline.config import PipelineConfig
from imgcls.serving_dir import versions as model_versions
from imgcls.trainer.config import TrainingConfig
from tests import images

pytestmark = pytest.mark.e2e


def _config(root) -> PipelineConfig:
  return PipelineConfig(
      data_root=str(root / 'data'), serving_dir=str(root / 'serving'),
      pipeline_root=str(root / 'pipeline'),
      training=TrainingConfig(epochs=1, batch_size=32), min_accuracy=0.0)


def _cli_run(root, *flags):
  return cli.main([
      'run', '--data-root', str(root / 'data'), '--serving-dir',
      str(root / 'serving'), '--pipeline-root', str(root / 'pipeline'),
      '--epochs', '1', '--batch-size', '32', '--min-accuracy', '0', *flags])


@pytest.fixture(scope='module')
def project(tmp_path_factory):
  root = tmp_path_factory.mktemp('project')
  images.write_shape_splits(root / 'data' / 'span-1', images.EVEN_SHAPES)
  return root, local.run(_config(root))


def test_first_run_writes_statistics_and_a_schema_and_trains(project):
  root, result = project
  assert result.data_passed and result.data_anomalies == []
  assert os.path.exists(root / 'data' / 'schema' / names.SCHEMA_FILE)
  assert os.path.exists(root / 'data' / 'schema' /
                        names.ACCEPTED_STATISTICS_FILE)
  assert os.path.exists(os.path.join(result.uri('statistics'), 'Split-train',
                                     'FeatureStats.pb'))
  assert result.pushed_version == '1'


def test_a_span_from_the_same_distribution_passes_and_trains(project):
  root, _ = project
  images.write_shape_splits(root / 'data' / 'span-2', images.EVEN_SHAPES,
                            seed=1)
  result = local.run(_config(root))
  assert result.data_passed and result.data_anomalies == []
  assert result.history  # trained


def test_a_skewed_span_is_refused_until_accepted(project, capsys):
  root, _ = project
  images.write_shape_splits(root / 'data' / 'span-3', images.SKEWED_SHAPES,
                            seed=2)
  versions = model_versions.versions(str(root / 'serving' / 'LenetModel'))
  assert _cli_run(root) == 1
  out = capsys.readouterr().out
  assert 'data REFUSED before training' in out
  assert 'train label_name: ' in out
  assert 'Linfty distance between current and previous is 0.5' in out
  assert 'nothing pushed' in out
  assert model_versions.versions(
      str(root / 'serving' / 'LenetModel')) == versions
  refused = local.results.load_run(str(root / 'pipeline'))
  assert refused.data_refused and not refused.history

  report = out.split('report: ')[1].strip()
  html = open(report, encoding='utf-8').read()
  assert 'Data validation' in html and 'Linfty distance' in html
  for figure in ('class_distribution.png', 'image_facts_file_size.png'):
    assert f'src="{figure}"' in html
    assert os.path.getsize(os.path.join(os.path.dirname(report), figure)) > 0

  assert _cli_run(root, '--accept-anomalies') == 0
  out = capsys.readouterr().out
  assert 'anomalies ACCEPTED' in out
  accepted = local.results.load_run(str(root / 'pipeline'))
  assert accepted.data_passed and accepted.history
