"""A gs:// data root is listed, checked and split exactly as the same tree on
disk: spans, the skip list, the header checks, the hash split and the
fingerprint, through TF's own GCS code against the emulator."""
import json
import os
import textwrap

import pytest

from tests import images

pytestmark = [pytest.mark.slow, pytest.mark.bucket]

# Prints, for the data root in argv[1], what a run would read.
_DESCRIBE = textwrap.dedent("""
    import json, sys
    from imgcls.imagedata import class_folders, data_layout
    root = sys.argv[1]
    plans = {}
    for window in (1, 2):
      plan = data_layout.resolve(root, span_window=window)
      plans[window] = {
          'summary': {k: v for k, v in plan.summary().items()
                      if k != 'data_root'},
          'files': {s: [[f.relative_path, f.class_name] for f in fs]
                    for s, fs in plan.files.items()},
          'skipped': plan.skipped,
          'fingerprint': plan.fingerprint()}
    split = class_folders.read_split(root + '/span-2/train')
    checked = [[p[len(root):], r] for p, r in split.skipped]
    print(json.dumps({'plans': plans, 'checked': checked}))
""")


def describe(gcs, root):
  """_DESCRIBE's answer, with `root` written as <root> in the reasons."""
  result = gcs.run(['python', '-c', _DESCRIBE, root])
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.splitlines()[-1].replace(root, '<root>'))


def write_spans(root):
  images.write_class_folders(os.path.join(root, 'span-1', 'train'),
                             {'cat': 3, 'dog': 2})
  images.write_class_folders(os.path.join(root, 'span-2', 'train'),
                             {'cat': 2, 'dog': 3}, seed=2)
  images.write_class_folders(os.path.join(root, 'span-2', 'test'),
                             {'cat': 1, 'dog': 1}, seed=3)
  train = os.path.join(root, 'span-2', 'train')
  for relative, data in (('cat/truncated.png', images.png_header(28, 28)),
                         ('cat/.DS_Store', b'not data'),
                         ('dog/nested/deep.png', b'in a subfolder'),
                         ('dog/notes.txt', b'not an image')):
    os.makedirs(os.path.dirname(os.path.join(train, relative)), exist_ok=True)
    with open(os.path.join(train, relative), 'wb') as f:
      f.write(data)


def test_spans_skips_and_checks_as_on_disk(gcs, tmp_path):
  local = str(tmp_path / 'photos')
  write_spans(local)
  gcs.create_bucket('photos')
  gcs.upload_tree(local, 'gs://photos/set')
  on_disk = describe(gcs, local)
  in_bucket = describe(gcs, 'gs://photos/set')
  for window in ('1', '2'):
    disk, bucket = on_disk['plans'][window], in_bucket['plans'][window]
    assert bucket['summary'] == disk['summary']
    assert bucket['files'] == disk['files']
    assert bucket['skipped'] == disk['skipped']
  assert in_bucket['plans']['2']['summary']['train_spans'] == [1, 2]
  assert [p for p, _ in in_bucket['plans']['1']['skipped']] == [
      'span-2/train/dog/nested/deep.png']
  assert in_bucket['checked'] == on_disk['checked']
  assert sorted(p for p, _ in in_bucket['checked']) == [
      '/span-2/train/cat/truncated.png', '/span-2/train/dog/nested/deep.png',
      '/span-2/train/dog/notes.txt']
  assert (in_bucket['plans']['1']['fingerprint'] !=
          on_disk['plans']['1']['fingerprint'])  # other times of change


def test_the_hash_split_and_the_fingerprint_follow_the_objects(gcs, tmp_path):
  local = str(tmp_path / 'plain')
  images.write_class_folders(os.path.join(local, 'train'),
                             {'cat': 10, 'dog': 10})
  gcs.create_bucket('plain')
  gcs.upload_tree(local, 'gs://plain/set')
  describe_plain = textwrap.dedent("""
      import json, sys
      from imgcls.imagedata import data_layout
      plan = data_layout.resolve(sys.argv[1])
      print(json.dumps([plan.test_source, plan.fingerprint(),
                        {s: [f.relative_path for f in fs]
                         for s, fs in plan.files.items()}]))
  """)

  def plan_of(root):
    result = gcs.run(['python', '-c', describe_plain, root])
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])

  source, before, files = plan_of('gs://plain/set')
  assert [source, files] == plan_of(local)[::2]
  assert source == 'hash' and files['test'] and files['train']
  assert plan_of('gs://plain/set')[1] == before
  gcs.upload('gs://plain/set/train/cat/0-0.png',
             images.encode(images.digit_like(0, seed=99)))
  assert plan_of('gs://plain/set')[1] != before


def test_an_object_gone_before_it_is_read_is_skipped_as_on_disk(gcs):
  """Listed, then deleted before the ExampleGen reads it: the same skip
  reason as a file deleted from disk, never a TF traceback."""
  gcs.create_bucket('photos')
  result = gcs.run(['python', '-c', textwrap.dedent("""
      from imgcls.imagedata import class_folders
      try:
        class_folders.read_image('gs://photos/set/train/cat/gone.png')
      except class_folders.ImageProblem as e:
        print(e)
  """)])
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith('cannot read: '), result.stdout
  assert 'gs://photos/set/train/cat/gone.png' in result.stdout
