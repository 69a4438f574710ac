"""`imgcls compile --verify-serving`: on Kubeflow, the push checks itself as
the pipeline's last step.

The step is checked as compiled, with the pinned kfp-pipeline-spec 2.16.1
protos and KFP's upload checks (tests/kfp_fake_server.py), and run as KFP
2.16.1 runs a container step: the driver resolves the run-ID placeholder of
the task's input (backend/src/v2/driver/resolve.go), the launcher puts that
input into the args (component/launcher_v2.go), and a directory stands for
the serving PVC. It runs as its own process, against the local development
server, on versions written as the Pusher writes them (provenance naming the
run, warm-up requests with the test images). That the step is absent unless
asked for: tests/test_kubeflow.py, test_tasks_and_their_dependencies.
"""
import contextlib
import os
import socket
import subprocess

import pytest

from imgcls.clients import verify
from imgcls.components import versioned_pusher
from imgcls.dev_server.server import ModelServer, ServerConfig
from imgcls.pipeline import kubeflow
from imgcls.pipeline.config import ServingCheck
from imgcls.serving_dir import history, provenance, versions, warmup
from tests import kfp_fake_server
from tests import served_models as testing
from tests.test_kubeflow import (
  IMAGE,
  TASKS,
  ResourceSpec,
  _compile,
  _k8s,
  _load,
)

# Every test here compiles the pipeline into a KFP spec (TFX, TensorFlow).
pytestmark = pytest.mark.slow

MODEL = 'LenetModel'
RUN_ID = '4f6d2a8e-run-of-this-test'
RUN_ID_ARG = "{{$.inputs.parameters['pipeline_run_id']}}"
REST_PORT, GRPC_PORT = testing.free_port(), testing.free_port()


@pytest.fixture(scope='module')
def default_step(tmp_path_factory):
  """The package of `imgcls compile --verify-serving` (no HOST)."""
  package = _compile(tmp_path_factory.mktemp('kfp') / 'p.yaml', '--image',
                     IMAGE, '--verify-serving')
  spec, platform = _load(package)
  return package, spec, platform


@pytest.fixture(scope='module')
def local_step(tmp_path_factory):
  """The step's spec, compiled against a server on this machine."""
  spec, _ = _load(_compile(
      tmp_path_factory.mktemp('kfp') / 'p.yaml', '--verify-serving',
      '127.0.0.1', '--rest-port', str(REST_PORT), '--grpc-port',
      str(GRPC_PORT), '--verify-timeout', '5'))
  return spec


@pytest.fixture(scope='module')
def models(tmp_path_factory):
  root = tmp_path_factory.mktemp('models')
  return (testing.save_model(str(root / 'a')),
          testing.save_model(str(root / 'b')))


def test_the_step_follows_the_pusher_on_the_serving_pvc(default_step):
  package, spec, platform = default_step
  kfp_fake_server.check_package(package.read_bytes())
  tasks = spec.root.dag.tasks
  assert sorted(tasks) == sorted(TASKS + (kubeflow.VERIFY_TASK,))
  step = tasks[kubeflow.VERIFY_TASK]
  assert list(step.dependent_tasks) == ['Pusher']
  assert not step.caching_options.enable_cache
  assert step.inputs.parameters['pipeline_run_id'].runtime_value.constant \
      .string_value == '{{$.pipeline_job_uuid}}'
  label = kubeflow.executor_label(spec, kubeflow.VERIFY_TASK)
  assert spec.components[step.component_ref.name].input_definitions \
      .parameters['pipeline_run_id'].parameter_type == (
          kubeflow.pipeline_spec_pb2.ParameterType.STRING)
  container = kubeflow.deployment_config(spec).executors[label].container
  assert container.image == IMAGE
  assert list(container.command) + list(container.args) == [
      'imgcls', 'verify-push', '--model-base-path', '/serving/LenetModel',
      # The headless Service: each ready pod is checked, not one of them.
      '--host', 'tfserving-headless', '--rest-port', '8501',
      '--grpc-port', '8500', '--timeout', '120', '--every-address',
      '--pushed-by-run', RUN_ID_ARG]
  assert container.resources == ResourceSpec(
      resource_cpu_request='1', resource_cpu_limit='1',
      resource_memory_request='4Gi', resource_memory_limit='4Gi')
  config = _k8s(platform, label)
  assert [(m.constant, m.mount_path) for m in config.pvc_mount] == [
      ('imgcls-serving', '/serving')]
  assert config.pvc_mount[0] == _k8s(
      platform, kubeflow.executor_label(spec, 'Pusher')).pvc_mount[0]


def _as_kfp_runs_it(spec, run_id, serving_dir):
  """The step's argv once KFP's driver and launcher have filled it in, with
  `serving_dir` where the serving PVC is mounted."""
  task = spec.root.dag.tasks[kubeflow.VERIFY_TASK]
  parameters = {
      name: (run_id if p.runtime_value.constant.string_value ==
             kubeflow.RUN_ID_PLACEHOLDER else
             p.runtime_value.constant.string_value)
      for name, p in task.inputs.parameters.items()}
  container = kubeflow.deployment_config(spec).executors[
      kubeflow.executor_label(spec, kubeflow.VERIFY_TASK)].container
  argv = []
  for arg in list(container.command) + list(container.args):
    for name, value in parameters.items():
      arg = arg.replace(f"{{{{$.inputs.parameters['{name}']}}}}", value)
    argv.append(arg.replace('/serving/', f'{serving_dir}/'))
  assert not [a for a in argv if '{{' in a], argv
  return argv


def _push(model_dir, base, version, run_id):
  """`version` as the Pusher of KFP run `run_id` writes it."""
  path = testing.push_version(model_dir, base, version)
  provenance.write_into(path, provenance.Provenance(
      model_uri=f'minio://mlpipeline/v2/artifacts/imgcls/{run_id}/Trainer/'
      'a1b2/model', pipeline_run_id=run_id))
  warmup.write_requests(path, versioned_pusher._warmup_requests(
      path, MODEL, [testing.png(seed=n) for n in range(3)]))
  return path


@pytest.fixture
def serving(tmp_path, models):
  """Version 1 from an earlier run; version 2, another model, pushed by
  RUN_ID."""
  base = str(tmp_path / 'serving' / MODEL)
  _push(models[0], base, 1, 'an-earlier-run')
  _push(models[1], base, 2, RUN_ID)
  return base


def _server(base):
  return ModelServer(ServerConfig(base, MODEL, rest_port=REST_PORT,
                                  grpc_port=GRPC_PORT, poll_seconds=0.05))


def _run(argv):
  return subprocess.run(argv, capture_output=True, text=True, timeout=300,
                        check=False)


def test_a_version_that_serves_as_in_process_passes(local_step, serving):
  with _server(serving):
    done = _run(_as_kfp_runs_it(local_step, RUN_ID,
                                os.path.dirname(serving)))
  assert done.returncode == 0, done.stdout + done.stderr
  assert 'serving verified: version 2 answers over REST and gRPC' in (
      done.stdout)
  assert versions.versions(serving) == [1, 2]


def test_a_version_that_never_loads_is_rolled_back_and_the_step_fails(
    local_step, serving, tmp_path, models):
  elsewhere = str(tmp_path / 'elsewhere' / MODEL)
  testing.push_version(models[0], elsewhere, 1)
  with _server(elsewhere):  # never sees version 2
    done = _run(_as_kfp_runs_it(local_step, RUN_ID,
                                os.path.dirname(serving)))
  assert done.returncode == 1, done.stdout + done.stderr
  assert 'version 2 is not AVAILABLE after 5 s' in done.stdout
  assert 'rolled back: version 3 republishes the version before it' in (
      done.stdout)
  assert versions.versions(serving) == [1, 2, 3]
  assert provenance.of_version(os.path.join(serving, '3')).rollback_of == 1


def test_a_run_that_pushed_nothing_passes_without_a_server(local_step,
                                                          serving):
  done = _run(_as_kfp_runs_it(local_step, 'a-run-that-was-not-blessed',
                              os.path.dirname(serving)))
  assert done.returncode == 0, done.stdout + done.stderr
  assert 'nothing pushed by this run (a-run-that-was-not-blessed)' in (
      done.stdout)
  assert versions.versions(serving) == [1, 2]


def test_only_a_push_of_the_run_counts_not_a_rollback_copying_it(serving):
  assert verify.version_pushed_by_run(serving, RUN_ID) == 2
  history.rollback(serving, 1)
  history.rollback(serving, 2)  # version 4 copies version 2's provenance
  assert verify.version_pushed_by_run(serving, RUN_ID) == 2


def test_the_check_sends_the_test_images_of_the_warmup_file(serving):
  images = [testing.png(seed=n) for n in range(3)]
  assert warmup.images_in(os.path.join(serving, '2')) == images
  assert warmup.images_in(os.path.join(serving, 'missing')) == []


def test_each_pod_must_serve_the_version_not_just_one(serving, tmp_path,
                                                     models, monkeypatch):
  # A headless Service's name resolves to every ready pod; here two local
  # servers stand for two pods, the second one lagging behind.
  pods = {'127.0.0.1': serving, '127.0.0.2': str(tmp_path / 'lagging' / MODEL)}
  testing.push_version(models[0], pods['127.0.0.2'], 1)
  real_getaddrinfo = socket.getaddrinfo
  monkeypatch.setattr(socket, 'getaddrinfo', lambda host, *a, **k: [
      info for address in pods for info in real_getaddrinfo(address, *a, **k)
  ] if host == 'tfserving-headless' else real_getaddrinfo(host, *a, **k))
  with contextlib.ExitStack() as stack:
    for address, base in pods.items():
      stack.enter_context(ModelServer(ServerConfig(
          base, MODEL, host=address, rest_port=REST_PORT,
          grpc_port=GRPC_PORT, poll_seconds=0.05)))
    addresses, verdict = verify.verify_push_at_every_address(
        ServingCheck('tfserving-headless', REST_PORT, GRPC_PORT, 2),
        serving, 2)
  assert addresses == ['127.0.0.1', '127.0.0.2']
  assert 'version 2 is not AVAILABLE' in verdict.problem
  assert verdict.rolled_back_as == 3
