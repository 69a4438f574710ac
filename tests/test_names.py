"""The shared names agree with what the pipeline's components declare."""
import ast
import dataclasses

from imgcls.contract import names
from imgcls.pipeline import pipeline as pipeline_def
from imgcls.pipeline.config import PipelineConfig


def test_every_output_key_is_an_output_of_the_pipeline(tmp_path):
  config = PipelineConfig(str(tmp_path / 'data'), str(tmp_path / 'serving'),
                          str(tmp_path / 'pipeline'), tune=True)
  config = dataclasses.replace(
      config, training=dataclasses.replace(config.training,
                                           model_type='LenetModel'))
  pipeline = pipeline_def.create_pipeline(config)
  declared = {key for node in pipeline.components for key in node.outputs}
  assert set(names.ARTIFACT_KEYS) <= declared, (
      set(names.ARTIFACT_KEYS) - declared)


def test_no_name_is_assigned_twice():
  """A second assignment would silently replace the first for every reader."""
  with open(names.__file__, encoding='utf-8') as f:
    tree = ast.parse(f.read())
  assigned = [target.id for node in tree.body if isinstance(node, ast.Assign)
              for target in node.targets if isinstance(target, ast.Name)]
  assert not [n for n in set(assigned) if assigned.count(n) > 1]
