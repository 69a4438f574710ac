"""ImageExampleGen: a FileBasedExampleGen for class-folder image datasets.

    ImageExampleGen(input_base='data/')   # data/train/<class>/*, data/test/...

It is a FileBasedExampleGen with its own Beam executor (as TFX's avro and
parquet examples) and its own driver. The executor resolves the layout
(plain or spans, see imagedata.data_layout) by itself, because Kubeflow
Pipelines outside Vertex AI does not run ExampleGen drivers. The output
splits are always `train` and `test`.
"""
from typing import Optional, Union

from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2

from imgcls.components.image_example_gen import driver, executor
from imgcls.components.image_example_gen.options import ExampleGenOptions
from imgcls.imagedata import data_layout


class ImageExampleGen(FileBasedExampleGen):
  """Reads <input_base>/[span-N/]{train,test}/<class>/<image files>."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
  DRIVER_CLASS = driver.Driver

  def __init__(self,
               input_base: Union[str, data_types.RuntimeParameter],
               options: Optional[ExampleGenOptions] = None):
    # The patterns only name the splits: the executor resolves the files.
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=split, pattern=f'{split}/*/*')
        for split in data_layout.SPLITS
    ])
    super().__init__(
        input_base=input_base,
        input_config=input_config,
        output_config=example_gen_pb2.Output(),
        custom_config=(options or ExampleGenOptions()).to_custom_config())
