"""Each setting in one place: the params file is read where a command
starts, never on import or while the flags are built."""
import os
import subprocess
import sys

import pytest

from imgcls import cli
from imgcls.contract import deployment
from imgcls.contract.errors import UserError
from imgcls.pipeline import kubeflow_config

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
      gpus=0, trainer_cpu='1', trainer_memory='1Gi')
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
  assert '--keep-versions 0: at least 1' in capsys.readouterr().err


def test_compile_refuses_an_output_that_is_not_yaml(tmp_path, capsys):
  output = tmp_path / 'pipeline.json'
  assert cli.main(['compile', '--output', str(output)]) == 2
  assert f'--output {output}: the package is YAML' in capsys.readouterr().err
  assert not output.exists()
