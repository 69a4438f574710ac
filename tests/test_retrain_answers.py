"""A person's answer to what retraining left waiting, through `imgcls
retrain` on Kubeflow (tests/kfp_fake_server.py): refused data accepted with
--accept-anomalies or by an edited schema, a run given up on tried again with
--retry; and the command line that --status hands the person.

The same answers run for real with LocalDagRunner in tests/test_retrain.py.
"""
import functools
import json

from imgcls import cli
from imgcls.components.data_validation.options import DataValidationOptions
from imgcls.contract import names
from imgcls.pipeline.config import PipelineConfig
from imgcls.retrain import person, watcher
from imgcls.retrain import state as state_lib
from tests import images, kfp_fake_server


def _args(kfp_root, server, *extra):
  return ['retrain', '--once', '--data-root', str(kfp_root / 'data'),
          '--serving-dir', str(kfp_root / 'serving'), '--pipeline-root',
          str(kfp_root / 'state'), '--kfp-host', server.host, '--gpus', '0',
          *extra]


def _tick(kfp_root, server, *extra):
  return cli.main(_args(kfp_root, server, *extra))


def _history(kfp_root):
  return json.loads(
      (kfp_root / 'state' / state_lib.STATE_FILE).read_text())['history']


def _schema(kfp_root):
  return kfp_root / 'data' / 'schema' / names.SCHEMA_FILE


def _refused(kfp_root, server):
  """span-1 submitted, then failed by the data gate: refused data. The run
  inferred the schema, as a first run does."""
  assert _tick(kfp_root, server) == 0
  _schema(kfp_root).parent.mkdir(parents=True)
  _schema(kfp_root).write_text('feature { name: "label_name" }\n')
  server.set_state(server.runs[-1]['run_id'], 'FAILED', 'data refused',
                   failed_task=names.DATA_GATE_NODE)
  assert _tick(kfp_root, server) == 1
  return server.runs[-1]


def _accepts_anomalies(server) -> bool:
  """The DataValidator's accept_anomalies in the last uploaded pipeline."""
  (pipeline,) = server.pipelines
  package = server.uploaded(pipeline['pipeline_id'])[-1]
  task = kfp_fake_server.check_package(package)['root']['dag']['tasks'][
      'DataValidator']
  return DataValidationOptions.from_parameter(task['inputs']['parameters'][
      'options']['runtimeValue']['constant']).accept_anomalies


def test_refused_data_is_trained_after_accept_anomalies(
    kfp_root, kfp_server, capsys):
  refused = _refused(kfp_root, kfp_server)
  assert _accepts_anomalies(kfp_server) == 0
  out = capsys.readouterr().out
  assert 'span-1 waits for a person: refused' in out
  answer = ' '.join(_args(kfp_root, kfp_server)[1:]) + ' --accept-anomalies'
  assert answer in out
  assert _tick(kfp_root, kfp_server) == 1  # waits: nothing submitted
  assert len(kfp_server.runs) == 1

  assert _tick(kfp_root, kfp_server, '--accept-anomalies') == 0
  (_, run) = kfp_server.runs
  assert run['run_id'] != refused['run_id']
  assert _accepts_anomalies(kfp_server) == 1
  kfp_server.set_state(run['run_id'], 'SUCCEEDED')
  provenance = kfp_root / 'serving' / 'LenetModel' / '1' / names.PROVENANCE_FILE
  provenance.parent.mkdir(parents=True)
  provenance.write_text(json.dumps(
      {'model_uri': f'minio://mlpipeline/v2/artifacts/imgcls/{run["run_id"]}'
                    '/Trainer/salt/model'}))
  capsys.readouterr()
  assert _tick(kfp_root, kfp_server) == 0
  assert ('span-1: pushed version 1 (answered with --accept-anomalies)' in
          capsys.readouterr().out)
  assert [(h['outcome'], h['answer']) for h in _history(kfp_root)] == [
      ('refused', ''), ('pushed', '--accept-anomalies')]
  assert _tick(kfp_root, kfp_server) == 0
  assert len(kfp_server.runs) == 2


def test_an_edited_schema_retries_the_refused_data(kfp_root, kfp_server):
  _refused(kfp_root, kfp_server)
  assert _history(kfp_root)[-1]['schema_digest'] == person.schema_digest(
      _config(kfp_root))
  _schema(kfp_root).write_text(_schema(kfp_root).read_text() +
                           'feature { name: "image_format" }\n')
  assert _tick(kfp_root, kfp_server) == 0
  assert len(kfp_server.runs) == 2
  assert _accepts_anomalies(kfp_server) == 0  # the schema answers, not a flag
  assert [(h['outcome'], h['answer']) for h in _history(kfp_root)] == [
      ('refused', ''), ('submitted', 'edited schema')]


def test_a_refusal_accepted_stays_accepted_when_its_run_is_retried(
    kfp_root, kfp_server):
  _refused(kfp_root, kfp_server)
  assert _tick(kfp_root, kfp_server, '--accept-anomalies') == 0
  # Cancelled: KFP does not retry it (only FAILED runs), so a new run.
  kfp_server.set_state(kfp_server.runs[-1]['run_id'], 'CANCELED')
  assert _tick(kfp_root, kfp_server) == 0  # a plain tick
  assert len(kfp_server.runs) == 3
  assert _accepts_anomalies(kfp_server) == 1  # ... that accepts, as answered
  assert _history(kfp_root)[-1]['answer'] == '--accept-anomalies'
  assert _history(kfp_root)[-1]['attempts'] == 2


def test_a_run_given_up_on_runs_again_only_with_retry(kfp_root, kfp_server,
                                                       capsys):
  assert _tick(kfp_root, kfp_server, '--max-tries', '1') == 0
  kfp_server.set_state(kfp_server.runs[0]['run_id'], 'FAILED', 'OOMKilled')
  assert _tick(kfp_root, kfp_server, '--max-tries', '1') == 1
  assert _history(kfp_root)[-1]['outcome'] == 'gave_up'
  out = capsys.readouterr().out
  assert (' '.join(_args(kfp_root, kfp_server, '--max-tries', '1')[1:]) +
          ' --retry') in out
  assert _tick(kfp_root, kfp_server, '--max-tries', '1') == 1  # never automatic
  assert len(kfp_server.runs) == 1
  assert _tick(kfp_root, kfp_server, '--max-tries', '1', '--retry') == 0
  assert len(kfp_server.runs) == 2
  assert [(h['outcome'], h['answer'], h['attempts'])
          for h in _history(kfp_root)] == [('gave_up', '', 1),
                                       ('submitted', '--retry', 1)]


def test_retry_with_nothing_to_retry_says_so(kfp_root, kfp_server, capsys):
  assert _tick(kfp_root, kfp_server, '--retry') == 2
  assert ('--retry: nothing was given up or rolled back' in
          capsys.readouterr().err)
  assert not kfp_server.runs


def test_status_reads_the_state_and_runs_nothing(kfp_root, kfp_server, capsys):
  _refused(kfp_root, kfp_server)
  capsys.readouterr()
  status = ['retrain', '--status', *_args(kfp_root, kfp_server)[2:]]
  assert cli.main(status) == 0
  out = capsys.readouterr().out
  assert f'retrain state: {kfp_root / "state" / state_lib.STATE_FILE}' in out
  assert 'last: span-1 refused (attempt 1' in out
  assert f'or edit {_schema(kfp_root)} to expect this data, then:' in out
  assert len(kfp_server.runs) == 1


def test_the_answer_command_keeps_the_watchers_flags_and_hides_the_token():
  argv = ['-v', 'retrain', '--watch', '--interval', '60', '--data-root',
          '/d x', '--kfp-token', 's3cret', '--kfp-host=h', '--kfp-token=t2',
          '--retry']
  assert person.answer_command(argv, '--accept-anomalies') == (
      "imgcls retrain --once --data-root '/d x' --kfp-token \"$KFP_TOKEN\" "
      '--kfp-host=h --kfp-token "$KFP_TOKEN" --accept-anomalies')


def _config(kfp_root):
  return PipelineConfig(data_root=str(kfp_root / 'data'), serving_dir='',
                        pipeline_root='')


def test_retry_answers_once_not_on_every_tick_of_a_watch(kfp_root, kfp_server,
                                                         capsys):
  watch = ['retrain', '--watch', *_args(kfp_root, kfp_server)[2:], '--retry']
  assert cli.main(watch) == 2
  assert '--retry answers once: use it with --once' in capsys.readouterr().err


def test_a_watch_prints_each_tick_as_once_does(kfp_root, kfp_server,
                                               monkeypatch, capsys):
  monkeypatch.setattr(watcher, 'watch',
                      functools.partial(watcher.watch, max_ticks=2))
  watch = ['retrain', '--watch', '--interval', '0.01',
           *_args(kfp_root, kfp_server)[2:]]
  assert cli.main(watch) == 0
  out = capsys.readouterr().out.splitlines()
  assert [line.split(' (')[0] for line in out] == [
      f'span-1: submitted: KFP run {kfp_server.runs[0]["run_id"]}'] * 2


def test_a_refusal_recorded_without_a_schema_digest_waits_for_a_flag(
    kfp_root, kfp_server):
  _refused(kfp_root, kfp_server)
  state_file = kfp_root / 'state' / state_lib.STATE_FILE
  state = json.loads(state_file.read_text())
  del state['history'][-1]['schema_digest']  # as an older watcher wrote it
  state_file.write_text(json.dumps(state))
  assert _tick(kfp_root, kfp_server) == 1  # still waits
  assert len(kfp_server.runs) == 1  # not taken for an edited schema
  assert _tick(kfp_root, kfp_server, '--accept-anomalies') == 0
  assert len(kfp_server.runs) == 2


def _given_up(kfp_root, server):
  """span-1 submitted, failed, given up on (--max-tries 1)."""
  assert _tick(kfp_root, server, '--max-tries', '1') == 0
  server.set_state(server.runs[0]['run_id'], 'FAILED', 'OOMKilled')
  assert _tick(kfp_root, server, '--max-tries', '1') == 1


def test_every_tick_exits_1_for_as_long_as_something_waits(
    kfp_root, kfp_server, capsys):
  _given_up(kfp_root, kfp_server)
  capsys.readouterr()
  for _ in range(3):  # cron's later ticks: each tells cron a person is needed
    assert _tick(kfp_root, kfp_server, '--max-tries', '1') == 1
    assert 'span-1 waits for a person: gave_up' in capsys.readouterr().out
  assert len(kfp_server.runs) == 1
  assert _tick(kfp_root, kfp_server, '--max-tries', '1', '--retry') == 0


def test_files_added_to_a_span_given_up_on_are_new_data(
    kfp_root, kfp_server, capsys):
  _given_up(kfp_root, kfp_server)
  images.write_class_folders(str(kfp_root / 'data' / 'span-1' / 'train'),
                             {'a': 12, 'b': 12}, seed=1)
  capsys.readouterr()
  assert _tick(kfp_root, kfp_server, '--max-tries', '1') == 0
  assert 'no retraining' not in capsys.readouterr().out
  assert len(kfp_server.runs) == 2
  assert [(h['data_key'], h['outcome'], h['new_images'])
          for h in _history(kfp_root)] == [('span-1', 'gave_up', 6),
                                           ('span-1', 'submitted', 24)]


def test_files_added_to_a_span_a_run_no_longer_reads_are_not_new_data(
    kfp_root, kfp_server, capsys):
  _given_up(kfp_root, kfp_server)
  images.write_class_folders(str(kfp_root / 'data' / 'span-2' / 'train'),
                             {'a': 3, 'b': 3}, seed=2)
  assert _tick(kfp_root, kfp_server, '--max-tries', '1') == 0
  kfp_server.set_state(kfp_server.runs[-1]['run_id'], 'SUCCEEDED')
  assert _tick(kfp_root, kfp_server, '--max-tries', '1') == 0  # closed
  # --window 1 reads span-2 alone: files added to span-1 change no run.
  images.write_class_folders(str(kfp_root / 'data' / 'span-1' / 'train'),
                             {'a': 12, 'b': 12}, seed=1)
  capsys.readouterr()
  assert _tick(kfp_root, kfp_server, '--max-tries', '1') == 0
  assert 'no retraining' in capsys.readouterr().out
  assert len(kfp_server.runs) == 2
