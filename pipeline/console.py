"""The console of a command that runs the pipeline on this machine.

Free of TFX imports, so the commands' modules load instantly: TFX loads
inside the console, where what it prints goes to the log.
"""
import functools

from imgcls.contract import console


def run_console(pipeline_root: str, command: str,
                verbose: bool) -> console.Console:
  """A line per component as it starts and ends, with its key result."""
  return console.Console(
      console.log_path(pipeline_root, command), verbose,
      describe=functools.partial(_describe, pipeline_root))


def _describe(pipeline_root: str, node_id: str) -> str:
  from imgcls.pipeline import local
  return local.describe_component(pipeline_root, node_id)
