"""TF Serving's text-proto files: --model_config_file,
--batching_parameters_file and --monitoring_config_file, read as
tensorflow_model_server reads them
(ParseProtoTextFile: text format, unknown fields are errors).

The pip package tensorflow-serving-api carries ModelServerConfig but not
BatchingParameters (servables/tensorflow/session_bundle_config.proto) or
MonitoringConfig (config/monitoring_config.proto), so those two messages are
declared here, field for field as in TF Serving 2.19.
"""
import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from google.protobuf import (
  descriptor_pb2,
  descriptor_pool,
  message_factory,
  text_format,
  wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from imgcls.contract import storage
from imgcls.contract.errors import UserError

_PACKAGE = 'tensorflow.serving'
_WRAPPERS = 'google/protobuf/wrappers.proto'
# (name, number, type or message type, repeated) of each field.
_BATCHING_FIELDS = (
    ('max_batch_size', 1, '.google.protobuf.Int64Value', False),
    ('batch_timeout_micros', 2, '.google.protobuf.Int64Value', False),
    ('max_enqueued_batches', 3, '.google.protobuf.Int64Value', False),
    ('num_batch_threads', 4, '.google.protobuf.Int64Value', False),
    ('thread_pool_name', 5, '.google.protobuf.StringValue', False),
    ('allowed_batch_sizes', 6, 'int64', True),
    ('pad_variable_length_inputs', 7, 'bool', False),
    ('enable_large_batch_splitting', 8, '.google.protobuf.BoolValue', False),
    ('max_execution_batch_size', 9, '.google.protobuf.Int64Value', False),
)
_MONITORING_MESSAGES = {
    'PrometheusConfig': (('enable', 1, 'bool', False),
                         ('path', 2, 'string', False)),
    'MonitoringConfig': (('prometheus_config', 1,
                          '.tensorflow.serving.PrometheusConfig', False),),
}
_SCALAR_TYPES = {
    'int64': descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    'bool': descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    'string': descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
}
# PrometheusExporter::kPrometheusPath.
DEFAULT_PROMETHEUS_PATH = '/monitoring/prometheus/metrics'


def _message_classes(file_name: str, messages: Dict[str, Tuple]):
  """Message classes for `messages` ({name: fields}), in their own pool."""
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  file_proto = descriptor_pb2.FileDescriptorProto(
      name=file_name, package=_PACKAGE, syntax='proto3',
      dependency=[_WRAPPERS])
  for message_name, fields in messages.items():
    message = file_proto.message_type.add(name=message_name)
    for name, number, kind, repeated in fields:
      field = message.field.add(
          name=name, number=number,
          label=(descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                 if repeated else
                 descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL))
      if kind in _SCALAR_TYPES:
        field.type = _SCALAR_TYPES[kind]
      else:
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
        field.type_name = kind
  pool.Add(file_proto)
  return {
      name: message_factory.GetMessageClass(
          pool.FindMessageTypeByName(f'{_PACKAGE}.{name}'))
      for name in messages
  }


_BatchingParameters = _message_classes(
    'imgcls/batching_parameters.proto',
    {'BatchingParameters': _BATCHING_FIELDS})['BatchingParameters']
_MonitoringConfig = _message_classes('imgcls/monitoring_config.proto',
                                     _MONITORING_MESSAGES)['MonitoringConfig']


def _parse_text_file(path: str, message, flag: str):
  try:
    return text_format.Parse(storage.read_bytes(path).decode('utf-8'),
                             message)
  except OSError as e:
    raise UserError(f'{flag}: cannot read {path}: {e.strerror or e}') from e
  except text_format.ParseError as e:
    raise UserError(f'{flag}: {path} is not a valid '
                    f'{message.DESCRIPTOR.name} text proto: {e}') from e


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
  """A ServableVersionPolicy: which versions on disk to serve."""
  kind: str = 'latest'  # 'latest', 'all' or 'specific'
  num_versions: int = 1  # for 'latest'
  versions: Tuple[int, ...] = ()  # for 'specific'

  def aspired(self, on_disk) -> List[int]:
    """The versions of `on_disk` to serve, newest first."""
    newest_first = sorted(on_disk, reverse=True)
    if self.kind == 'all':
      return newest_first
    if self.kind == 'specific':
      return [v for v in newest_first if v in self.versions]
    return newest_first[:self.num_versions]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """One model of a ModelServerConfig's model_config_list."""
  name: str
  base_path: str
  policy: VersionPolicy = VersionPolicy()
  version_labels: Tuple[Tuple[str, int], ...] = ()


def _policy(proto) -> VersionPolicy:
  choice = proto.WhichOneof('policy_choice')
  if choice == 'all':
    return VersionPolicy('all')
  if choice == 'specific':
    return VersionPolicy('specific', versions=tuple(proto.specific.versions))
  # Unset is latest with one version (file_system_storage_path_source.proto);
  # so is num_versions 0.
  return VersionPolicy('latest', max(1, proto.latest.num_versions))


def read_model_config_file(path: str) -> List[ModelConfig]:
  """The models of a ModelServerConfig, checked as ValidateModelConfigList
  and the TensorFlow platform check (server_core.cc) check them."""
  config = _parse_text_file(path, model_server_config_pb2.ModelServerConfig(),
                            '--model_config_file')
  if config.WhichOneof('config') == 'custom_model_config':
    raise UserError('--model_config_file: custom_model_config is not '
                    'supported; use model_config_list')
  models = []
  for model in config.model_config_list.config:
    problem = _model_problem(model, models)
    if problem:
      raise UserError(f'--model_config_file: {problem}')
    models.append(
        ModelConfig(model.name, model.base_path,
                    _policy(model.model_version_policy),
                    tuple(sorted(model.version_labels.items()))))
  return models


def _model_problem(model, earlier: List[ModelConfig]) -> Optional[str]:
  """What TF Serving would refuse in one model's config, in its words."""
  if not model.model_platform:
    return ('Illegal setting neither ModelServerConfig::model_type '
            '(deprecated) nor ModelServerConfig::model_platform, model name '
            f'is {model.name}')
  if model.model_platform != 'tensorflow':
    return (f'Model {model.name} requests unsupported platform '
            f'{model.model_platform}')
  if any(m.name == model.name for m in earlier):
    return f'Illegal to list model {model.name} multiple times in config list'
  # A URI with a scheme (gs://) is absolute (model_servers/server_core.cc,
  # UriIsRelativePath).
  if not (os.path.isabs(model.base_path) or
          storage.is_remote(model.base_path)):
    return (f'Expected model {model.name} to have an absolute path or URI; '
            f'got base_path()={model.base_path}')
  return None


def read_batching_parameters(path: Optional[str]):
  """A BatchingParameters message; without a file, the defaults that
  server.cc uses (only the thread pool name set)."""
  parameters = _BatchingParameters()
  if path:
    return _parse_text_file(path, parameters, '--batching_parameters_file')
  parameters.thread_pool_name.value = 'model_server_batch_threads'
  return parameters


def read_prometheus_path(path: Optional[str]) -> Optional[str]:
  """The Prometheus path a MonitoringConfig enables, or None."""
  if not path:
    return None
  config = _parse_text_file(path, _MonitoringConfig(),
                            '--monitoring_config_file')
  if not config.prometheus_config.enable:
    return None
  return config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
