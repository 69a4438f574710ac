"""The shared names agree with what the pipeline's components declare."""
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
  assert set(names.OUTPUT_KEYS) <= declared, (
      set(names.OUTPUT_KEYS) - declared)
