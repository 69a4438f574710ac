"""A run's fixed costs stay cut (issue 26): no TFX sdist per Beam component,
no Google Cloud client at start-up, no last garbage collection at exit.
Speeds themselves are bench/'s."""
import subprocess
import sys

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
import pytest
from tfx.utils import dependency_utils

from imgcls.pipeline.config import DEFAULT_BEAM_ARGS


def test_default_beam_args_build_no_tfx_package(monkeypatch):
  """tfx/utils/dependency_utils.py, make_beam_dependency_flags: with a
  dependency flag among the Beam args, BaseBeamExecutor passes them on as
  they are."""

  def build_ephemeral_package():
    raise AssertionError('a Beam component built an sdist of TFX')

  monkeypatch.setattr(dependency_utils, 'build_ephemeral_package',
                      build_ephemeral_package)
  args = list(DEFAULT_BEAM_ARGS)
  assert dependency_utils.make_beam_dependency_flags(args) == args


def test_default_beam_args_run_a_pipeline_in_this_process():
  """The flag that stops the sdist names no image: the in-process runner
  never reads it."""
  options = beam.options.pipeline_options.PipelineOptions(
      list(DEFAULT_BEAM_ARGS))
  with beam.Pipeline(options=options) as pipeline:
    doubled = pipeline | beam.Create([1, 2, 3]) | beam.Map(lambda x: 2 * x)
    assert_that(doubled, equal_to([2, 4, 6]))


@pytest.mark.slow
def test_running_the_pipeline_imports_no_google_cloud_client():
  """tfx.v1 imports tfx.v1.extensions and google.cloud.aiplatform with it;
  what `imgcls run` imports does not."""
  code = ('import sys; import imgcls.pipeline.local, imgcls.report.writer; '
          'print("google.cloud.aiplatform" in sys.modules)')
  out = subprocess.run([sys.executable, '-c', code], check=True,
                       capture_output=True, text=True).stdout
  assert out.strip() == 'False'


def test_the_console_script_exits_with_its_code_past_the_last_collection():
  """The exit skips only the final garbage collection (imgcls.cli.
  exit_process): the code, the output and atexit handlers are as before."""
  code = ('import atexit, gc; from imgcls import cli; '
          'atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0));'
          'print("done"); cli.exit_process(3)')
  ended = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=False)
  assert ended.returncode == 3
  assert ended.stdout == 'done\nfrozen True\n'
