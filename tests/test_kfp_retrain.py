"""`imgcls retrain --once --kfp-host`: a tick submits, later ticks follow the
run through KFP's API (tests/kfp_fake_server.py) until it ends.

Each test walks one data root through ticks, moving the fake's run state
between them as Argo would.
"""
import json
import os

import pytest

from imgcls import cli
from imgcls.contract import names
from imgcls.retrain import state as state_lib
from tests import images, kfp_fake_server

# Every test here compiles the pipeline into a KFP spec (TFX, TensorFlow).
pytestmark = pytest.mark.slow


def _tick(kfp_root, server, *extra):
  return cli.main([
      'retrain', '--once', '--data-root', str(kfp_root / 'data'),
      '--serving-dir', str(kfp_root / 'serving'), '--pipeline-root',
      str(kfp_root / 'state'), '--kfp-host', server.host, '--gpus', '0',
      '--trainer-cpu', '2', '--trainer-memory', '3Gi', *extra])


def _history(kfp_root):
  return json.loads(
      (kfp_root / 'state' / state_lib.STATE_FILE).read_text())['history']


def _publish(kfp_root, version, run_id):
  """A version as the Pusher of run_id leaves it, with its provenance."""
  provenance = kfp_root / 'serving' / 'LenetModel' / str(version) / (
      names.PROVENANCE_FILE)
  provenance.parent.mkdir(parents=True)
  provenance.write_text(json.dumps({
      'model_uri': f'minio://mlpipeline/private-artifacts/ns/v2/artifacts/'
                   f'imgcls/{run_id}/Trainer/salt/model'}))


def test_a_submitted_run_still_running_is_followed_and_nothing_new_submitted(
    kfp_root, kfp_server, capsys):
  assert _tick(kfp_root, kfp_server) == 0
  (run,) = kfp_server.runs
  assert 'submitted: KFP run' in capsys.readouterr().out
  (attempt,) = _history(kfp_root)
  assert (attempt['outcome'], attempt['kfp_run_id']) == ('submitted',
                                                         run['run_id'])
  kfp_server.set_state(run['run_id'], 'RUNNING')
  images.write_class_folders(str(kfp_root / 'data' / 'span-2' / 'train'),
                             {'a': 2, 'b': 2}, seed=2)
  assert _tick(kfp_root, kfp_server) == 0
  assert len(kfp_server.runs) == 1
  assert _history(kfp_root)[-1]['outcome'] == 'submitted'


def test_the_cronjobs_resource_flags_reach_the_trainer(kfp_root, kfp_server):
  assert _tick(kfp_root, kfp_server) == 0
  (pipeline,) = kfp_server.pipelines
  (package,) = kfp_server.uploaded(pipeline['pipeline_id'])
  trainer = kfp_fake_server.check_package(package)['deploymentSpec'][
      'executors']['Trainer_executor']['container']['resources']
  assert trainer == {'resourceCpuLimit': '2', 'resourceCpuRequest': '2',
                     'resourceMemoryLimit': '3Gi',
                     'resourceMemoryRequest': '3Gi'}
  # No --kfp-pipeline-root: the run names none, so the namespace's is used.
  assert 'pipeline_root' not in kfp_server.runs[0]['runtime_config']


def test_a_failed_run_is_retried_on_the_next_tick_up_to_max_tries(
    kfp_root, kfp_server, capsys):
  assert _tick(kfp_root, kfp_server, '--max-tries', '2') == 0
  (run,) = kfp_server.runs
  kfp_server.set_state(run['run_id'], 'FAILED', 'Trainer: OOMKilled')
  assert _tick(kfp_root, kfp_server, '--max-tries', '2') == 0
  # KFP's own retry: the same run, running again; nothing new submitted.
  assert [r['state'] for r in kfp_server.runs] == ['RUNNING']
  assert f'POST /apis/v2beta1/runs/{run["run_id"]}:retry' in kfp_server.calls
  (attempt,) = _history(kfp_root)
  assert (attempt['outcome'], attempt['attempts']) == ('submitted', 2)
  kfp_server.set_state(run['run_id'], 'FAILED', 'Trainer: OOMKilled')
  capsys.readouterr()
  assert _tick(kfp_root, kfp_server, '--max-tries', '2') == 1
  out = capsys.readouterr().out
  assert 'span-1: gave_up' in out and 'OOMKilled' in out
  # Handled: no new run; and it waits for a person, so the exit stays 1.
  assert _tick(kfp_root, kfp_server, '--max-tries', '2') == 1
  assert len(kfp_server.runs) == 1


def test_a_run_failed_by_the_data_gate_is_refused_data_not_retried(
    kfp_root, kfp_server, capsys):
  assert _tick(kfp_root, kfp_server) == 0
  (run,) = kfp_server.runs
  kfp_server.set_state(run['run_id'], 'FAILED', 'data refused',
                       failed_task=names.DATA_GATE_NODE)
  capsys.readouterr()
  assert _tick(kfp_root, kfp_server) == 1
  assert 'span-1: refused' in capsys.readouterr().out
  (attempt,) = _history(kfp_root)
  assert attempt['outcome'] == 'refused'
  assert 'data validation gate' in attempt['detail']
  assert _tick(kfp_root, kfp_server) == 1  # waits: no retry, no new run
  assert len(kfp_server.runs) == 1 and kfp_server.runs[0]['state'] == 'FAILED'


def test_a_timed_out_run_is_stopped_and_a_new_run_follows_once_it_is_over(
    kfp_root, kfp_server):
  assert _tick(kfp_root, kfp_server) == 0
  (run,) = kfp_server.runs
  state_file = kfp_root / 'state' / state_lib.STATE_FILE
  state = json.loads(state_file.read_text())
  state['history'][-1]['submitted'] = '2000-01-01T00:00:00+00:00'
  state_file.write_text(json.dumps(state))
  assert _tick(kfp_root, kfp_server) == 1  # timed out: stopped, counted
  assert run['state'] == 'CANCELING'
  assert _history(kfp_root)[-1]['outcome'] == 'timed_out'
  assert _tick(kfp_root, kfp_server) == 1  # still CANCELING: nothing new
  assert len(kfp_server.runs) == 1
  kfp_server.set_state(run['run_id'], 'CANCELED')
  assert _tick(kfp_root, kfp_server) == 0
  assert len(kfp_server.runs) == 2
  assert _history(kfp_root)[-1]['attempts'] == 2


def _submitted_long_ago(kfp_root, server, run_id):
  """The attempt and the run, both past --kfp-timeout."""
  state_file = kfp_root / 'state' / state_lib.STATE_FILE
  state = json.loads(state_file.read_text())
  state['history'][-1]['submitted'] = '2000-01-01T00:00:00+00:00'
  state_file.write_text(json.dumps(state))
  server.set_created_at(run_id, '2000-01-01T00:00:00Z')


def test_a_run_whose_workflow_is_gone_stays_canceling_and_is_passed_over(
    kfp_root, kfp_server, capsys):
  """KFP writes CANCELING before it patches the workflow; with the workflow
  gone the patch fails (HTTP 500) and nothing ever moves the run on. Past
  its age limit it counts as over, and the next tick submits."""
  assert _tick(kfp_root, kfp_server) == 0
  (stuck,) = kfp_server.runs
  kfp_server.set_state(stuck['run_id'], 'RUNNING')
  kfp_server.lose_workflow(stuck['run_id'])
  _submitted_long_ago(kfp_root, kfp_server, stuck['run_id'])
  assert _tick(kfp_root, kfp_server) == 0
  assert [r['state'] for r in kfp_server.runs] == ['CANCELING', 'PENDING']
  (attempt,) = _history(kfp_root)
  assert (attempt['outcome'], attempt['attempts']) == ('submitted', 2)
  assert 'passed over 1 run(s) still CANCELING' in attempt['detail']
  assert stuck['run_id'] in attempt['detail']
  log = (kfp_root / 'state' / 'imgcls.log').read_text()
  assert 'KFP did not stop it' in log and 'HTTP 500' in log


def test_a_stop_refused_with_row_not_found_counts_the_run_as_over(
    kfp_root, kfp_server):
  """A run someone else stopped is CANCELING already: KFP's terminate
  answers HTTP 400 "Row not found" (run_store.go). The tick records that and
  moves on instead of failing on every tick."""
  assert _tick(kfp_root, kfp_server) == 0
  (run,) = kfp_server.runs
  kfp_server.set_state(run['run_id'], 'CANCELING')
  _submitted_long_ago(kfp_root, kfp_server, run['run_id'])
  assert _tick(kfp_root, kfp_server) == 0
  assert len(kfp_server.runs) == 2
  (attempt,) = _history(kfp_root)
  assert (attempt['outcome'], attempt['attempts']) == ('submitted', 2)
  log = (kfp_root / 'state' / 'imgcls.log').read_text()
  assert 'HTTP 400' in log and 'Row not found' in log


def test_a_succeeded_run_records_the_version_its_pusher_published(
    kfp_root, kfp_server, capsys):
  assert _tick(kfp_root, kfp_server) == 0
  (run,) = kfp_server.runs
  kfp_server.set_state(run['run_id'], 'SUCCEEDED')
  _publish(kfp_root, 1, 'an-older-run')
  _publish(kfp_root, 2, run['run_id'])
  capsys.readouterr()
  assert _tick(kfp_root, kfp_server) == 0
  assert 'span-1: pushed version 2' in capsys.readouterr().out
  (attempt,) = _history(kfp_root)
  assert (attempt['outcome'], attempt['version']) == ('pushed', '2')
  assert _tick(kfp_root, kfp_server) == 0
  assert 'no retraining' in capsys.readouterr().out


def test_a_succeeded_run_that_published_nothing_was_not_blessed(
    kfp_root, kfp_server):
  assert _tick(kfp_root, kfp_server) == 0
  kfp_server.set_state(kfp_server.runs[0]['run_id'], 'SUCCEEDED')
  assert _tick(kfp_root, kfp_server) == 0
  (attempt,) = _history(kfp_root)
  assert attempt['outcome'] == 'not_blessed'
  assert 'published no version' in attempt['detail']


def test_no_run_is_submitted_while_another_run_of_the_pipeline_is_active(
    kfp_root, kfp_server, tmp_path, capsys):
  # A run someone started by hand, through `imgcls submit`.
  assert cli.main(['submit', '--host', kfp_server.host, '--gpus', '0',
                   '--data-root', str(kfp_root / 'data'), '--serving-dir',
                   str(kfp_root / 'serving')]) == 0
  assert _tick(kfp_root, kfp_server) == 0
  assert len(kfp_server.runs) == 1
  assert 'is still PENDING; nothing new submitted' in capsys.readouterr().out
  assert not (tmp_path / 'state' / state_lib.STATE_FILE).exists()


def test_in_a_namespace_everything_is_namespaced(kfp_root):
  server = kfp_fake_server.FakeKfp(namespace_required=True)
  try:
    assert _tick(kfp_root, server, '--kfp-namespace', 'team-a') == 0
    (pipeline,) = server.pipelines
    (run,) = server.runs
    assert pipeline['namespace'] == run['namespace'] == 'team-a'
    server.set_state(run['run_id'], 'RUNNING')
    assert _tick(kfp_root, server, '--kfp-namespace', 'team-a') == 0
    assert len(server.runs) == 1
  finally:
    server.stop()


def test_following_a_kfp_run_needs_the_host(kfp_root, kfp_server, capsys):
  assert _tick(kfp_root, kfp_server) == 0
  assert cli.main([
      'retrain', '--once', '--data-root', str(kfp_root / 'data'),
      '--serving-dir', str(kfp_root / 'serving'),
      '--pipeline-root', str(kfp_root / 'state')]) == 2
  assert 'pass --kfp-host to follow it' in capsys.readouterr().err
  assert os.path.exists(kfp_root / 'state' / state_lib.STATE_FILE)


def test_a_run_without_a_state_holds_back_submissions_only_until_the_timeout(
    kfp_root, kfp_server, capsys):
  """RUNTIME_STATE_UNSPECIFIED: KFP has no word on the run's workflow. It
  may still start, so it counts as active, but only for --kfp-timeout after
  its creation: one run that never gets a state must not block retraining
  for good."""
  assert cli.main(['submit', '--host', kfp_server.host, '--gpus', '0',
                   '--data-root', str(kfp_root / 'data'), '--serving-dir',
                   str(kfp_root / 'serving')]) == 0
  (stuck,) = kfp_server.runs
  kfp_server.set_state(stuck['run_id'], 'RUNTIME_STATE_UNSPECIFIED')
  capsys.readouterr()
  assert _tick(kfp_root, kfp_server) == 0
  assert 'still RUNTIME_STATE_UNSPECIFIED; nothing new submitted' in (
      capsys.readouterr().out)
  assert len(kfp_server.runs) == 1
  kfp_server.set_created_at(stuck['run_id'], '2000-01-01T00:00:00Z')
  assert _tick(kfp_root, kfp_server) == 0
  assert len(kfp_server.runs) == 2
  assert _history(kfp_root)[-1]['outcome'] == 'submitted'
