"""`imgcls versions` and `imgcls rollback`: what a serving directory publishes,
where each version came from, and going back to an earlier one."""
import argparse
import dataclasses
import json
import sys

from imgcls.contract import names, storage
from imgcls.contract.errors import UserError
from imgcls.serving_dir import history as history_lib


def register(subparsers) -> None:
  versions = subparsers.add_parser(
      'versions', help='the published versions and where they came from',
      description='Lists the versions under a model base path, newest first: '
      'which one the latest policy serves, when each was pushed, its model '
      'artifact and MLMD run, the spans it was trained on, its test accuracy '
      'and the baseline it was gated against, rollbacks, and pruned versions.')
  _add_base_path(versions)
  versions.add_argument('--json', action='store_true',
                        help='the same as a JSON list, for scripts')
  versions.set_defaults(handler=_versions)
  rollback = subparsers.add_parser(
      'rollback', help='serve an earlier version again',
      description='Republishes version N (default: the one before the '
      'newest) as a new highest version, atomically. TF Serving\'s latest '
      'policy then serves it wherever the directory is watched, with no '
      'configuration change.')
  _add_base_path(rollback)
  rollback.add_argument('--to', type=int, metavar='N',
                        help='the version to go back to (default: the one '
                        'before the newest)')
  rollback.set_defaults(handler=_rollback)


def _add_base_path(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--model-base-path', required=True,
                      help='the directory of integer versions, e.g. '
                      'SERVING/LenetModel')


def _existing_base_path(args: argparse.Namespace) -> str:
  storage.check_reachable(args.model_base_path, '--model-base-path')
  if not storage.isdir(args.model_base_path):
    raise UserError(f'--model-base-path {args.model_base_path}: no such '
                    'directory')
  return args.model_base_path


def _versions(args: argparse.Namespace) -> int:
  records = history_lib.history(_existing_base_path(args))
  if args.json:
    json.dump([_as_json(r) for r in records], sys.stdout, indent=1)
    print()
  elif not records:
    print(f'{args.model_base_path}: nothing published yet')
  else:
    served_by = (names.MODEL_CONFIG_FILE if storage.is_remote(
        args.model_base_path) else 'latest policy')
    print('\n'.join(_describe(r, served_by) for r in records))
  return 0


def _rollback(args: argparse.Namespace) -> int:
  base_dir = _existing_base_path(args)
  new, source = history_lib.rollback(base_dir, args.to)
  print(f'version {new} republishes version {source} of {base_dir}; the '
        'latest policy serves it once loaded')
  return 0


def _as_json(record: history_lib.VersionRecord) -> dict:
  return {'version': record.version, 'state': record.state,
          'problem': record.problem, **dataclasses.asdict(record.provenance)}


def _describe(record: history_lib.VersionRecord, served_by: str) -> str:
  """A few lines per version: what it is, where from, how good."""
  p = record.provenance
  state = {history_lib.SERVING: f'serving ({served_by})',
           history_lib.PUBLISHED: 'published',
           history_lib.PRUNED: f'pruned {p.pruned_at}'.rstrip()}[record.state]
  head = f'version {record.version}  {state}'
  if p.pushed_at:
    head += f'  pushed {p.pushed_at}'
  if p.rollback_of is not None:
    head += f'  rollback of {p.rollback_of}'
  lines = [head]
  if record.problem:
    lines.append(f'  {record.problem}')
  if p.model_uri:
    model_id = '' if p.model_id is None else f' (MLMD artifact {p.model_id})'
    lines.append(f'  model {p.model_uri}{model_id}')
  if p.pipeline_run_id:
    lines.append(f'  run {p.pipeline_run_id} of pipeline {p.pipeline_name}')
  if p.train_spans:
    lines.append(f'  trained on spans {", ".join(map(str, p.train_spans))}')
  if p.accuracy is not None:
    lines.append(f'  test accuracy {p.accuracy:.4f} against ' +
                 _baseline(p))
  if not (p.model_uri or record.problem):
    lines.append('  model unknown (not pushed by the pipeline)')
  return '\n'.join(lines)


def _baseline(p) -> str:
  if p.baseline_version is None:
    return 'no baseline (nothing was served)'
  accuracy = ('' if p.baseline_accuracy is None
              else f' {p.baseline_accuracy:.4f}')
  return f'baseline version {p.baseline_version}{accuracy}'
