"""A span named `span-01`, and a data root that mixes the plain and span
layouts (issue 36): refused by name, the same way by `imgcls run`, `imgcls
retrain` and retrain on Kubeflow, where they trained on part of the data,
or on none while every tick said "no new data".

Each root is built from `imgcls sample-data` output, as the issue's repros.
"""
import shutil

import pytest

from imgcls import cli

LAYOUTS = {
    # sample-data's train/ and test/, moved into span-01/
    'span-01': (lambda data, digits: shutil.copytree(digits,
                                                     data / 'span-01'),
                '{data}/span-01: not a span name; spans are named span-<N>, '
                'N from 1 without leading zeros'),
    # sample-data's train/ and test/, and a span-1/ beside them
    'mixed': (lambda data, digits: (
        shutil.copytree(digits, data, dirs_exist_ok=True),
        shutil.copytree(digits, data / 'span-1')),
              '{data}: holds both train/ (the plain layout) and span-1/ (the '
              'span layout); use one'),
}


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  out = tmp_path_factory.mktemp('digits') / 'data'
  assert cli.main(['sample-data', '--out', str(out)]) == 0
  return out


def _data_root(root, digits, layout):
  data = root / 'data'
  shutil.rmtree(data, ignore_errors=True)
  data.mkdir(parents=True, exist_ok=True)
  make, message = LAYOUTS[layout]
  make(data, digits)
  return data, message.format(data=data)


def _refused(capsys, message):
  err = capsys.readouterr().err
  assert message in err and 'Traceback' not in err


@pytest.mark.parametrize('layout', LAYOUTS)
def test_retrain_refuses_it(tmp_path, digits, capsys, layout):
  data, message = _data_root(tmp_path, digits, layout)
  assert cli.main(['retrain', '--once', '--data-root', str(data),
                   '--serving-dir', str(tmp_path / 'serving'),
                   '--pipeline-root', str(tmp_path / 'pipeline')]) == 2
  _refused(capsys, message)
  assert not (tmp_path / 'pipeline' / 'retrain_state.json').exists()


@pytest.mark.parametrize('layout', LAYOUTS)
def test_retrain_on_kubeflow_refuses_it_and_submits_nothing(
    kfp_root, kfp_server, digits, capsys, layout):
  data, message = _data_root(kfp_root, digits, layout)
  assert cli.main(['retrain', '--once', '--data-root', str(data),
                   '--serving-dir', str(kfp_root / 'serving'),
                   '--pipeline-root', str(kfp_root / 'state'),
                   '--kfp-host', kfp_server.host, '--gpus', '0']) == 2
  _refused(capsys, message)
  assert not kfp_server.runs


@pytest.mark.parametrize('layout', LAYOUTS)
def test_run_refuses_it(tmp_path, digits, capsys, layout):
  data, message = _data_root(tmp_path, digits, layout)
  assert cli.main(['run', '--data-root', str(data), '--serving-dir',
                   str(tmp_path / 'serving'), '--pipeline-root',
                   str(tmp_path / 'pipeline')]) == 2
  _refused(capsys, message)
  assert not (tmp_path / 'serving').exists()
