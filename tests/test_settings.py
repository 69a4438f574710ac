"""Each setting in one place: the params file is read where a command
starts, never on import or while the flags are built; every declared setting
reaches the executor that reads it."""
import dataclasses
import os
import subprocess
import sys
import typing

import pytest

from imgcls import cli
from imgcls.components.data_validation.options import DataValidationOptions
from imgcls.components.image_example_gen.options import ExampleGenOptions
from imgcls.contract import deployment, names, settings
from imgcls.contract.errors import UserError
from imgcls.pipeline import config as pipeline_config
from imgcls.pipeline import kubeflow_config
from imgcls.pipeline.config import PipelineConfig
from imgcls.retrain.cli import RoundSettings
from imgcls.trainer.config import TrainingConfig

_MISSING = '/nonexistent/params.env'


@pytest.fixture
def no_params_file(monkeypatch):
  monkeypatch.setenv(deployment.PARAMS_FILE_ENV, _MISSING)
  deployment.params.cache_clear()
  yield
  deployment.params.cache_clear()


def test_help_works_without_the_params_file():
  """In a fresh interpreter, so that every import happens under the test."""
  env = {**os.environ, deployment.PARAMS_FILE_ENV: _MISSING}
  for command in ([], ['run'], ['compile'], ['retrain'], ['train']):
    done = subprocess.run(
        [sys.executable, '-c', 'import sys; from imgcls import cli; '
         'sys.exit(cli.main(sys.argv[1:]))', *command, '--help'],
        env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (command, done.stderr[-2000:])
    assert 'usage: imgcls' in done.stdout


@pytest.mark.parametrize('command', [['compile'],
                                     ['compile', '--data-root', '/d',
                                      '--serving-dir', '/s',
                                      '--model-type', 'LenetModel']])
def test_compile_names_the_missing_params_file(no_params_file, command):
  args = cli.build_parser().parse_args(command)
  with pytest.raises(UserError, match=_MISSING):
    kubeflow_config.from_args(args)


def test_run_without_a_model_type_names_the_missing_params_file(
    no_params_file, capsys):
  assert cli.main(['run', '--data-root', '/nonexistent/data',
                   '--serving-dir', '/nonexistent/serving']) == 2
  assert _MISSING in capsys.readouterr().err


def test_options_read_the_params_file_only_when_resolved(no_params_file):
  options = kubeflow_config.KubeflowOptions(
      image='i', data_pvc='d', serving_pvc='s', gpu_node_selector=None,
      gpus=0, trainer_cpu='1', trainer_memory='1Gi', image_pull_secret='')
  assert options.resolved() == options  # nothing left to read
  with pytest.raises(UserError, match=_MISSING):
    kubeflow_config.KubeflowOptions().resolved()


def test_trainer_resources_default_to_the_params_file():
  options = kubeflow_config.KubeflowOptions().resolved()
  assert (options.gpus, options.trainer_cpu, options.trainer_memory) == (
      int(deployment.get('TRAINER_GPUS')), deployment.get('TRAINER_CPU'),
      deployment.get('TRAINER_MEMORY'))


def test_keep_versions_is_a_declared_pusher_parameter():
  """Defaulted once (PipelineConfig), declared on the Pusher's spec, not
  JSON in its custom_config."""
  from imgcls.components import versioned_pusher
  parameter = versioned_pusher.VersionedPusherSpec.PARAMETERS[
      versioned_pusher.KEEP_VERSIONS_KEY]
  assert parameter.type is int and not parameter.optional


def test_keep_versions_is_checked_where_it_is_declared(capsys):
  assert cli.main(['run', '--data-root', '/d', '--serving-dir', '/s',
                   '--model-type', 'LenetModel', '--keep-versions', '0']) == 2
  assert '--keep-versions 0: must be at least 1' in capsys.readouterr().err


def test_compile_refuses_an_output_that_is_not_yaml(tmp_path, capsys):
  output = tmp_path / 'pipeline.json'
  assert cli.main(['compile', '--output', str(output)]) == 2
  assert f'--output {output}: the package is YAML' in capsys.readouterr().err
  assert not output.exists()


# The round trip of every declared setting: flag -> config -> the pipeline as
# compiled to TFX's IR -> the execution properties an executor gets
# (tensorflow/tfx@v1.21.0: tfx/orchestration/portable/launcher.py,
# Launcher._prepare_execution) -> the executor's own reader. Each runs with a
# value other than its default.

# Values no rule below can make up: the flag's text.
_OTHER_TEXT = {
    'model_type': 'ResnetModel',
    'input_shape': '32,32,3',
    'model_options': 'width=64',
    'beam_args': '--direct_num_workers=2',
    'gpu_node_selector': 'pool=gpu',
}


def _other_text(field, declared, hint) -> str:
  """A flag's text for a value other than the setting's default."""
  if field.name in _OTHER_TEXT:
    return _OTHER_TEXT[field.name]
  if declared.choices:
    return next(c for c in declared.choices if c != field.default)
  if hint is int:
    default = field.default if isinstance(field.default, int) else 1
    passes = [v for v in (default + 1, default - 1)
              if not declared.check or declared.check(v) is None]
    return str(passes[0])
  if hint is float:
    return repr(field.default / 2 if field.default else 0.25)
  return f'other-{field.name}'


def _other_argv(cls) -> list:
  """Every flag of the class's settings, each with a value other than its
  default."""
  argv = []
  for path, field, declared in settings.every_setting(cls):
    flag = settings.flag(field, declared)
    if flag is None:
      continue
    hint = _hint(cls, path)
    argv.append(flag if hint is bool else
                f'{flag}={_other_text(field, declared, hint)}')
  return argv


def _hint(cls, path):
  """The declared type of the setting at `path`."""
  for name in path:
    cls = typing.get_type_hints(cls)[name]
  return cls


def _value(config, path):
  for name in path:
    config = getattr(config, name)
  return config


def _replaced(config, path, value):
  """The config with the setting at `path` set to `value`."""
  inner = (value if len(path) == 1 else
           _replaced(getattr(config, path[0]), path[1:], value))
  return dataclasses.replace(config, **{path[0]: inner})


_PATHS = ['--data-root', '/nonexistent/data', '--serving-dir',
          '/nonexistent/serving']
_PIPELINE_SETTINGS = [path for path, _, _ in settings.every_setting(
    PipelineConfig)]


def _config(*argv):
  return pipeline_config.pipeline_config_from_args(
      cli.build_parser().parse_args(['run', *_PATHS, *argv]))


@pytest.fixture(scope='module')
def other_config():
  """A PipelineConfig from `imgcls run` with every flag at a value other
  than its default, and each setting without a flag set likewise."""
  config = _config(*_other_argv(PipelineConfig))
  for path, field, declared in settings.every_setting(PipelineConfig):
    hint = _hint(PipelineConfig, path)
    if settings.flag(field, declared) is None:
      config = _replaced(config, path, not field.default if hint is bool
                         else hint(_other_text(field, declared, hint)))
  return config


@pytest.fixture(scope='module')
def other_ir(other_config):
  return _compiled(other_config)


def _compiled(config):
  from tfx.dsl.compiler import compiler

  from imgcls.pipeline import pipeline
  return compiler.Compiler().compile(pipeline.create_pipeline(config))


def _exec_properties(ir, node_id):
  """What the launcher hands the node's executor."""
  from tfx.orchestration import data_types_utils
  from tfx.orchestration.portable import inputs_utils
  (node,) = [n.pipeline_node for n in ir.nodes
             if n.pipeline_node.node_info.id == node_id]
  return data_types_utils.build_parsed_value_dict(
      inputs_utils.resolve_parameters_with_schema(
          node_parameters=node.parameters))


def _custom_config(properties):
  """As TFX hands it to run_fn and tuner_fn (tfx/components/trainer/
  fn_args_utils.py, get_common_fn_args)."""
  from tfx.utils import json_utils
  return json_utils.loads(properties['custom_config'])


# Each group of settings: the nodes whose executors read it, and their reader.
_READERS = {
    'example_gen': (('ImageExampleGen',),
                    ExampleGenOptions.from_exec_properties),
    'data_validation': (
        ('CuratedSchemaGen', 'DataValidator'),
        lambda properties: DataValidationOptions.from_parameter(
            properties['options'])),
    'training': (('Trainer', 'Tuner'),
                 lambda properties: TrainingConfig.from_custom_config(
                     _custom_config(properties))),
}


def test_every_group_of_settings_has_its_readers():
  assert {field.name for field, _ in settings.groups(PipelineConfig)} == set(
      _READERS)


@pytest.mark.parametrize('path', _PIPELINE_SETTINGS, ids='.'.join)
def test_a_setting_survives_the_round_trip_to_its_executor(
    other_config, other_ir, path):
  value = _value(other_config, path)
  default = _value(_config(), path)
  assert value != default, 'not set to another value than its default'
  if path[0] in _READERS:
    nodes, read = _READERS[path[0]]
    for node in nodes:
      assert _value(read(_exec_properties(other_ir, node)), path[1:]) == (
          value), node
  # Every setting, the pipeline-wide ones too: set back to its default alone,
  # it changes the compiled pipeline.
  assert _compiled(_replaced(other_config, path, default)) != other_ir


def test_compiling_the_same_config_gives_the_same_pipeline(other_config,
                                                           other_ir):
  """Else the test above would prove nothing."""
  assert _compiled(other_config) == other_ir


def test_the_tuner_reads_its_trials(other_config, other_ir):
  properties = _exec_properties(other_ir, 'Tuner')
  assert _custom_config(properties)[names.TUNE_TRIALS_KEY] == (
      other_config.tune_trials)


@pytest.mark.parametrize('cls, command', [
    (kubeflow_config.KubeflowOptions, 'compile'),
    (RoundSettings, 'retrain'),
])
def test_flags_outside_the_pipeline_read_back(cls, command):
  """Settings of how the steps run on Kubeflow, and of retrain's rounds:
  flag -> config (compile's Kubeflow options go to the KFP spec, not to an
  executor; tests/test_kubeflow.py reads them there)."""
  args = cli.build_parser().parse_args(
      [command, *_PATHS, *_other_argv(cls)])
  read = settings.from_args(cls, args)
  for field, _ in settings.fields(cls):
    assert getattr(read, field.name) != field.default, field.name
