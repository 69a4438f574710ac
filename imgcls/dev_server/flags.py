"""tensorflow_model_server's flags (model_servers/main.cc), spelled its way.

`imgcls serve` takes the args of the Kubernetes Deployment unchanged (paths
aside), plus this project's friendlier spellings as aliases. Every flag of
main.cc is accepted; those that mean nothing to a development server on one
machine (TPUs, TFLite, SSL, thread pools of the TensorFlow runtime, ...)
are logged as ignored. Values are written `--flag=value` or `--flag value`;
a boolean flag alone means true, as in TensorFlow's flag parser.
"""
import argparse
import logging
import os

_log = logging.getLogger(__name__)

# main.cc's flags with no meaning here: accepted, logged and ignored.
IGNORED_FLAGS = (
    'grpc_socket_path', 'rest_api_timeout_in_ms',
    'enable_per_model_batching_parameters', 'num_load_threads',
    'num_unload_threads', 'max_num_load_retries', 'load_retry_interval_micros',
    'flush_filesystem_caches', 'tensorflow_session_parallelism',
    'tensorflow_session_config_file', 'tensorflow_intra_op_parallelism',
    'tensorflow_inter_op_parallelism', 'use_alts_credentials',
    'ssl_config_file', 'platform_config_file',
    'per_process_gpu_memory_fraction', 'saved_model_tags',
    'grpc_channel_arguments', 'grpc_max_threads',
    'remove_unused_fields_from_bundle_metagraph', 'prefer_tflite_model',
    'num_tflite_pools', 'num_tflite_interpreters_per_pool',
    'enable_signature_method_name_check', 'xla_cpu_compilation_enabled',
    'xla_gpu_compilation_enabled', 'enable_profiler',
    'thread_pool_factory_config_file', 'mixed_precision',
    'skip_initialize_tpu', 'enable_grpc_healthcheck_service',
    'enable_serialization_as_tensor_content')
_TRUE = ('true', '1', 'yes')
_FALSE = ('false', '0', 'no')


def tf_bool(text: str) -> bool:
  """A boolean flag's value, as TensorFlow's flag parser reads it."""
  if text.lower() in _TRUE:
    return True
  if text.lower() in _FALSE:
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _flag_bool(parser, *names, dest, help_text, default=False):
  parser.add_argument(*names, dest=dest, type=tf_bool, nargs='?', const=True,
                      default=default, help=help_text)


def add_model_server_flags(parser: argparse.ArgumentParser) -> None:
  """The flags that configure what and how the server serves."""
  group = parser.add_argument_group('tensorflow_model_server flags')
  group.add_argument('--model_config_file', metavar='FILE',
                     help='a ModelServerConfig text proto: several models, '
                     'version policies, labels (--model_name and '
                     '--model_base_path are then ignored)')
  group.add_argument('--model_config_file_poll_wait_seconds', type=int,
                     default=0, metavar='S',
                     help='re-read --model_config_file every S seconds (0: '
                     'read once)')
  _flag_bool(group, '--enable_batching', dest='enable_batching',
             help_text='run concurrent requests as batches')
  group.add_argument('--batching_parameters_file', metavar='FILE',
                     help='a BatchingParameters text proto')
  group.add_argument('--monitoring_config_file', metavar='FILE',
                     help='a MonitoringConfig text proto; prometheus_config '
                     'serves metrics on the REST port')
  _flag_bool(group, '--enable_model_warmup', dest='enable_model_warmup',
             default=True,
             help_text='replay assets.extra/tf_serving_warmup_requests before '
             'a version is AVAILABLE (default true)')
  group.add_argument('--num_request_iterations_for_warmup', type=int,
                     default=0, metavar='N',
                     help='times each warm-up request runs (default 1)')
  _flag_bool(group, '--allow_version_labels_for_unavailable_models',
             dest='allow_version_labels_for_unavailable_models',
             help_text='allow a new label to name a version not yet loaded')
  _flag_bool(group, '--rest_api_enable_cors_support',
             dest='rest_api_enable_cors_support',
             help_text='add CORS headers to REST replies')
  group.add_argument('--rest_api_num_threads', type=int,
                     default=4 * (os.cpu_count() or 1), metavar='N',
                     help='REST worker threads (default 4 per CPU)')
  ignored = parser.add_argument_group(
      'accepted and ignored (no meaning for a development server)')
  for name in IGNORED_FLAGS:
    ignored.add_argument(f'--{name}', dest=f'ignored_{name}', nargs='?',
                         const='true', help=argparse.SUPPRESS)


def warn_ignored(args: argparse.Namespace) -> None:
  for name in IGNORED_FLAGS:
    value = getattr(args, f'ignored_{name}')
    if value is not None:
      _log.warning('--%s=%s means nothing to this development server; '
                   'ignored', name, value)
