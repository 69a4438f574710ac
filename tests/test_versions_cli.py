"""`imgcls versions`: the published versions, newest first, with provenance,
for pushed, rolled-back and pruned versions."""
import json
import os
import shutil

import pytest

from imgcls import cli
from imgcls.serving_dir import provenance, versions


def _push(base, model_uri, accuracy, baseline_version=None):
  """A version as the Pusher leaves it (a stand-in model and its provenance)."""
  record = provenance.Provenance(
      pushed_at=provenance.utc_now(), model_uri=model_uri, model_id=7,
      pipeline_name='imgcls', pipeline_run_id='2024-06-01T10:00:00.000001',
      train_spans=[2, 3], accuracy=accuracy, baseline_version=baseline_version,
      baseline_accuracy=None if baseline_version is None else 0.9)

  def write(tmp_dir):
    os.makedirs(tmp_dir)
    with open(os.path.join(tmp_dir, 'saved_model.pb'), 'w') as f:
      f.write(model_uri)
    provenance.write_into(tmp_dir, record)

  return versions.publish(base, write)


@pytest.fixture
def base(tmp_path):
  """v1 pruned; v2 pushed; v3 pushed; v4 a rollback of v2 (serving)."""
  base = str(tmp_path / 'serving' / 'LenetModel')
  _push(base, '/p/Trainer/model/1', 0.91)
  _push(base, '/p/Trainer/model/2', 0.93, baseline_version=1)
  _push(base, '/p/Trainer/model/3', 0.80, baseline_version=2)
  versions.prune(base, keep=2)
  assert cli.main(['rollback', '--model-base-path', base]) == 0
  return base


def _json(base, capsys):
  capsys.readouterr()
  assert cli.main(['versions', '--model-base-path', base, '--json']) == 0
  return json.loads(capsys.readouterr().out)


def test_json_lists_every_version_newest_first_with_its_provenance(
    base, capsys):
  listed = _json(base, capsys)
  assert [(v['version'], v['state']) for v in listed] == [
      (4, 'serving'), (3, 'published'), (2, 'published'), (1, 'pruned')]
  rolled_back, pushed, _, pruned = listed
  assert (rolled_back['kind'], rolled_back['rollback_of']) == ('rollback', 2)
  assert rolled_back['model_uri'] == '/p/Trainer/model/2'
  assert pushed['kind'] == 'push'
  assert pushed['model_uri'] == '/p/Trainer/model/3'
  assert pushed['model_id'] == 7
  assert pushed['pipeline_run_id'] == '2024-06-01T10:00:00.000001'
  assert pushed['train_spans'] == [2, 3]
  assert (pushed['accuracy'], pushed['baseline_version'],
          pushed['baseline_accuracy']) == (0.80, 2, 0.9)
  assert pushed['pushed_at'] and rolled_back['pushed_at'] >= pushed['pushed_at']
  assert pruned['model_uri'] == '/p/Trainer/model/1'
  assert pruned['pruned_at']


def test_text_says_what_serves_and_where_each_came_from(base, capsys):
  capsys.readouterr()
  assert cli.main(['versions', '--model-base-path', base]) == 0
  out = capsys.readouterr().out
  blocks = ('\n' + out).split('\nversion ')[1:]
  assert blocks[0].startswith('4  serving (latest policy)  pushed ')
  assert 'rollback of 2' in blocks[0]
  assert 'model /p/Trainer/model/3 (MLMD artifact 7)' in blocks[1]
  assert 'run 2024-06-01T10:00:00.000001 of pipeline imgcls' in blocks[1]
  assert 'trained on spans 2, 3' in blocks[1]
  assert 'test accuracy 0.8000 against baseline version 2 0.9000' in blocks[1]
  assert blocks[3].startswith('1  pruned ')
  assert 'against no baseline' in blocks[3]


def test_a_version_without_provenance_or_with_a_broken_one_is_still_listed(
    tmp_path, capsys):
  base = str(tmp_path / 'M')
  for version in ('1', '2'):  # e.g. copied in by hand
    os.makedirs(os.path.join(base, version))
  broken = os.path.join(base, '2', 'assets.extra', 'imgcls_provenance.json')
  os.makedirs(os.path.dirname(broken))
  with open(broken, 'w') as f:
    f.write('{not json')
  listed = _json(base, capsys)
  assert [v['version'] for v in listed] == [2, 1]
  assert 'unreadable provenance' in listed[0]['problem']
  assert broken in listed[0]['problem']
  assert listed[1]['model_uri'] == '' and not listed[1]['problem']
  assert cli.main(['versions', '--model-base-path', base]) == 0
  assert 'model unknown' in capsys.readouterr().out


def test_an_empty_or_missing_directory(tmp_path, capsys):
  (tmp_path / 'M').mkdir()
  assert cli.main(['versions', '--model-base-path', str(tmp_path / 'M')]) == 0
  assert 'nothing published yet' in capsys.readouterr().out
  assert cli.main(['versions', '--model-base-path',
                   str(tmp_path / 'missing')]) == 2
  err = capsys.readouterr().err
  assert 'no such directory' in err and 'Traceback' not in err


def test_pruned_records_outlive_a_directory_cleared_by_hand(base, capsys):
  shutil.rmtree(os.path.join(base, '3'))
  listed = _json(base, capsys)
  assert [v['version'] for v in listed] == [4, 2, 1]


def test_a_link_to_itself_named_as_a_version_is_skipped_saying_so(
    base, capsys):
  os.symlink('10', os.path.join(base, '10'))  # ln -s 10 10
  capsys.readouterr()
  assert cli.main(['versions', '--model-base-path', base]) == 0
  captured = capsys.readouterr()
  assert captured.out.startswith('version 4  serving')
  assert captured.err == (f'{base}/10: skipped, not a version: Too many '
                          'levels of symbolic links\n')
