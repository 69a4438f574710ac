"""The shared names agree with what the pipeline's components declare."""
import ast

import pytest

from imgcls import cli
from imgcls.contract import names
from imgcls.pipeline import pipeline as pipeline_def
from imgcls.pipeline.config import PipelineConfig
from imgcls.trainer.config import TrainingConfig


@pytest.fixture(scope='module')
def components(tmp_path_factory):
  """Every component of the pipeline, the optional ones included."""
  root = tmp_path_factory.mktemp('pipeline')
  config = PipelineConfig(str(root / 'data'), str(root / 'serving'),
                          str(root / 'pipeline'), tune=True,
                          training=TrainingConfig(model_type='LenetModel'))
  return pipeline_def.create_pipeline(config).components


def test_every_output_key_is_an_output_of_the_pipeline(components):
  declared = {key for node in components for key in node.outputs}
  assert set(names.ARTIFACT_KEYS) <= declared, (
      set(names.ARTIFACT_KEYS) - declared)


def test_no_name_is_assigned_twice():
  """A second assignment would silently replace the first for every reader."""
  with open(names.__file__, encoding='utf-8') as f:
    tree = ast.parse(f.read())
  assigned = [target.id for node in tree.body if isinstance(node, ast.Assign)
              for target in node.targets if isinstance(target, ast.Name)]
  assert not [n for n in set(assigned) if assigned.count(n) > 1]


def test_imgcls_run_help_names_every_step(components):
  (run,) = [parser for action in cli.build_parser()._subparsers._group_actions
            for name, parser in action.choices.items() if name == 'run']
  description = ' '.join(run.description.split())
  for node in components:
    assert node.id in description, node.id
