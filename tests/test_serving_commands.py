"""`imgcls evaluate-serving` and `imgcls verify-serving`, on a local server."""
import pytest

from imgcls import cli
from imgcls.dev_server.server import ModelServer, ServerConfig
from tests import served_models as testing

NAME = testing.MODEL_NAME
CLASSES = ','.join(testing.CLASS_NAMES)


@pytest.fixture(scope='module')
def server(base_path):
  with ModelServer(ServerConfig(base_path, NAME, rest_port=0,
                                grpc_port=0)) as running:
    yield running


@pytest.fixture(scope='module')
def test_dir(tmp_path_factory):
  return testing.write_class_folders(str(tmp_path_factory.mktemp('test')))


def _ports(rest_port, grpc_port):
  return ['--host', '127.0.0.1', '--rest-port', str(rest_port), '--grpc-port',
          str(grpc_port), '--model-name', NAME]


def _evaluate(test_dir, rest_port, grpc_port, *extra):
  return cli.main(['evaluate-serving', '--test-dir', test_dir] +
                  _ports(rest_port, grpc_port) + list(extra))


def test_evaluate_over_both_protocols_agrees_with_the_saved_model(
    server, base_path, test_dir, capsys):
  status = _evaluate(test_dir, server.rest_port, server.grpc_port,
                     '--batch-size', '3', '--model-path', f'{base_path}/1')
  out = capsys.readouterr().out
  assert status == 0, out
  assert f'Model {NAME} version 1: 12 images of 3 classes' in out
  rows = [line.split() for line in out.splitlines()]
  table = {(r[0], r[1]): r[2:] for r in rows if len(r) == 7}
  for source in ('rest', 'grpc', 'local'):
    for signature in ('serving_bytes', 'serving_default'):
      images, accuracy, _, _, errors = table[source, signature]
      assert (images, errors) == ('12', '0')
      assert accuracy.endswith('%')
  assert out.count('same class on 12 of 12 images answered by all') == 2


def test_evaluate_one_protocol_and_signature_at_a_version(
    server, test_dir, capsys):
  status = _evaluate(test_dir, server.rest_port, server.grpc_port,
                     '--protocol', 'grpc', '--signature', 'serving_default',
                     '--version', '1')
  out = capsys.readouterr().out
  assert status == 0, out
  assert [line.split()[:2] for line in out.splitlines()[2:]] == [
      ['grpc', 'serving_default']
  ]


def test_evaluate_a_missing_version_stops_with_a_message(
    server, test_dir, capsys):
  status = _evaluate(test_dir, server.rest_port, server.grpc_port,
                     '--version', '5')
  assert status == 2
  assert f'Could not find version 5 of model {NAME}' in capsys.readouterr().err


@pytest.mark.parametrize('protocol', ['rest', 'grpc'])
def test_evaluate_against_an_unreachable_server_says_so(
    test_dir, capsys, protocol):
  port = testing.free_port()
  status = _evaluate(test_dir, port, port, '--protocol', protocol)
  err = capsys.readouterr().err
  assert status == 2
  assert (f'imgcls evaluate-serving: error: cannot reach the model server '
          f'over {protocol.upper() if protocol == "rest" else "gRPC"}') in err
  assert f'127.0.0.1:{port}' in err


def _verify(rest_port, grpc_port, *extra):
  return cli.main(['verify-serving'] + _ports(rest_port, grpc_port) +
                  list(extra))


def test_verify_passes_for_an_available_version(server, capsys):
  assert _verify(server.rest_port, server.grpc_port, '--version', '1',
                 '--class-names', CLASSES) == 0
  out = capsys.readouterr().out
  assert out.startswith(f'OK: version 1 of {NAME} answers over REST and gRPC'
                        f' with serving_bytes, serving_default')


def test_verify_sends_a_given_image_to_the_latest_version(
    server, tmp_path, capsys):
  image = tmp_path / 'image.png'
  image.write_bytes(testing.png((50, 20), 'RGB'))
  assert _verify(server.rest_port, server.grpc_port, '--image',
                 str(image)) == 0
  assert capsys.readouterr().out.startswith('OK: version 1')


def test_verify_fails_for_a_version_the_server_lacks(server, capsys):
  assert _verify(server.rest_port, server.grpc_port, '--version', '2',
                 '--timeout', '0.3') != 0
  err = capsys.readouterr().err
  assert f'model {NAME} version 2 is not AVAILABLE after 0.3 s' in err
  assert f'Could not find version 2 of model {NAME}' in err


def test_verify_fails_when_the_classes_differ(server, capsys):
  assert _verify(server.rest_port, server.grpc_port, '--class-names',
                 'one,two,three') != 0
  err = capsys.readouterr().err
  assert 'failed verification' in err
  assert "is not one of the classes ['one', 'two', 'three']" in err


def test_verify_fails_when_nothing_listens(capsys):
  port = testing.free_port()
  assert _verify(port, port, '--timeout', '0') != 0
  assert 'cannot reach the model server over REST' in capsys.readouterr().err


def test_verify_refuses_an_unreadable_image(tmp_path, capsys):
  image = tmp_path / 'image.png'
  image.write_bytes(b'not an image')
  port = testing.free_port()
  assert _verify(port, port, '--image', str(image)) == 2
  assert f'--image {image}: not a readable image' in capsys.readouterr().err


@pytest.mark.parametrize('argument', [
    ['--rest-port', '70000'],
    ['--timeout', '-1'],
    ['--timeout', 'nan'],
    ['--version', 'latest'],
])
def test_bad_arguments_are_refused_by_the_parser(argument, capsys):
  with pytest.raises(SystemExit) as raised:
    _verify(8501, 8500, *argument)
  assert raised.value.code == 2
  assert f'argument {argument[0]}: {argument[1]} is not' in (
      capsys.readouterr().err)
