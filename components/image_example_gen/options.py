"""The ExampleGen's own settings, carried in FileBasedExampleGen's
custom_config.

FileBasedExampleGen's spec has no room for parameters of our own, but its
`custom_config` is a proto `Any`; a `Struct` packed in it carries them, and it
compiles for Kubeflow like any other execution property.

TFX is imported inside the methods: the CLI builds its flags from these
defaults, and `imgcls --help` should not wait for TFX to load.
"""
import json
from typing import Any, Dict, Tuple

from imgcls.contract import names, settings


@settings.settings_class
class ExampleGenOptions:
  span_window: int = settings.setting(
      1, 'train on the newest N spans (span layout only)',
      aliases=('--window',))
  max_bad_fraction: float = settings.setting(
      0.05, 'fail when more than this share of the files is unreadable')
  # The model's own decode refuses more than names.MAX_IMAGE_PIXELS, so this
  # may only lower it.
  max_image_pixels: int = settings.setting(
      names.MAX_IMAGE_PIXELS, 'skip and list images whose header declares '
      'more pixels (width x height); at most the default, the most the '
      'model decodes', check=settings.in_range(
          1, names.MAX_IMAGE_PIXELS, why='the most the model decodes'))

  def to_custom_config(self):
    """An example_gen_pb2.CustomConfig holding these options."""
    from google.protobuf import struct_pb2
    from tfx.proto import example_gen_pb2
    struct = struct_pb2.Struct()
    struct.update(settings.to_json(self))
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(struct)
    return config

  @classmethod
  def from_exec_properties(cls, exec_properties: Dict[str, Any]
                          ) -> 'ExampleGenOptions':
    from google.protobuf import json_format, struct_pb2
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_component_specs
    from tfx.utils import proto_utils
    text = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not text:
      return cls()
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(text, config)
    struct = struct_pb2.Struct()
    config.custom_config.Unpack(struct)
    return settings.from_json(
        cls, json.loads(json_format.MessageToJson(struct)))


def resolve_layout(exec_properties: Dict[str, Any]
                  ) -> Tuple[ExampleGenOptions, Any]:
  """The options, and the files the run reads (a data_layout.DataPlan):
  what the driver (locally, for the cache key) and the executor
  (everywhere) resolve alike."""
  from tfx.types import standard_component_specs

  from imgcls.imagedata import data_layout
  options = ExampleGenOptions.from_exec_properties(exec_properties)
  return options, data_layout.resolve(
      exec_properties[standard_component_specs.INPUT_BASE_KEY],
      options.span_window)
