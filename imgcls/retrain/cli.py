"""`imgcls retrain`: watch the data root and retrain on new data."""
import argparse

from imgcls.contract import settings
from imgcls.contract.errors import UserError
from imgcls.pipeline import config as pipeline_config
from imgcls.pipeline import kubeflow_config
from imgcls.pipeline.console import run_console


@settings.settings_class
class RoundSettings:
  """When a round runs the pipeline, and when it stops trying."""
  interval: float = settings.setting(
      300.0, 'seconds between rounds with --watch',
      check=settings.in_range(above=0))
  min_new_images: int = settings.setting(
      1, 'trigger only from this many new images', check=settings.in_range(1))
  max_tries: int = settings.setting(
      3, 'runs for the same data before giving up', check=settings.in_range(1))
  kfp_timeout: float = settings.setting(
      24.0, 'with --kfp-host: hours after which a run still active is '
      'stopped and counted as a failed try', check=settings.in_range(above=0))


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      'retrain', help='retrain when new data lands (a new span, or new files)',
      description='Detects new data in --data-root and, for at least '
      '--min-new-images new images, runs the pipeline (locally, or on '
      'Kubeflow with --kfp-host). State: <pipeline-root>/retrain_state.json. '
      'Refused data, a run given up on and a rolled-back push wait for a '
      'person: --status says what waits and the command that answers it.',
      # Exact flag names: --status echoes them back as the answering command.
      allow_abbrev=False)
  pipeline_config.add_pipeline_args(parser)
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument('--once', action='store_true',
                    help='one round, then exit (the default; for cron)')
  mode.add_argument('--watch', action='store_true',
                    help='a round every --interval seconds until stopped')
  mode.add_argument('--status', action='store_true',
                    help='show the last attempt, what waits for a person and '
                    'the command that answers it; runs nothing')
  parser.add_argument('--retry', action='store_true',
                      help='run again on data given up on (gave_up) or whose '
                      'push was rolled back (rolled_back); never automatic')
  settings.add_flags(parser, RoundSettings)
  parser.add_argument('--kfp-host',
                      help='submit the run to this Kubeflow Pipelines host '
                      'instead of running it here; later rounds follow it to '
                      'its end')
  settings.add_flags(parser, kubeflow_config.KubeflowOptions,
                     names=('image', 'pipeline_root', 'image_pull_secret'),
                     prefix='kfp',
                     help_prefix='with --kfp-host: ')
  parser.add_argument('--kfp-namespace',
                      help='with --kfp-host: the user\'s profile namespace, '
                      'where the runs live (multi-user installs; a '
                      'single-user KFP ignores it), not where KFP runs')
  parser.add_argument('--kfp-token',
                      help='with --kfp-host: bearer token for KFP\'s API, '
                      'as a literal string')
  parser.add_argument('--kfp-token-file',
                      help='with --kfp-host: a file holding the token, '
                      're-read on every request (a projected ServiceAccount '
                      'token of audience pipelines.kubeflow.org, which the '
                      'kubelet renews); default $KF_PIPELINES_SA_TOKEN_PATH, '
                      'else /var/run/secrets/kubeflow/pipelines/token when '
                      'it exists')
  # The same resource flags as `imgcls compile`, which the CronJob passes.
  kubeflow_config.add_resource_args(parser)
  parser.set_defaults(handler=_retrain)


def _retrain(args: argparse.Namespace) -> int:
  # TFX loads inside the console
  from imgcls.retrain import state, watcher
  rounds = settings.from_args(RoundSettings, args)
  config = pipeline_config.pipeline_config_from_args(args)
  if args.status:
    return _status(config, args.argv)
  # Model options and shapes are checked before a tick ingests anything; the
  # Trainer runs here unless the pipeline goes to Kubeflow.
  options = watcher.RetrainOptions(
      pipeline=pipeline_config.checked_at_start(config, args,
                                                local=not args.kfp_host),
      min_new_images=rounds.min_new_images,
      max_tries=rounds.max_tries,
      kfp=_kfp_target(args, rounds) if args.kfp_host else None,
      retry=args.retry)
  if args.watch:
    if args.retry:
      raise UserError('--retry answers once: use it with --once')
    with run_console(options.pipeline.pipeline_root, 'retrain', args.verbose):
      watcher.watch(options, rounds.interval,
                    on_tick=lambda attempt: _report(options, attempt,
                                                    args.argv))
    return 0
  with state.exclusive(options.pipeline.pipeline_root), run_console(
      options.pipeline.pipeline_root, 'retrain', args.verbose):
    attempt = watcher.tick(options)
  waits = _report(options, attempt, args.argv)
  # A failed run, and for as long as it waits, what needs a person: a
  # non-zero exit tells cron and fails the CronJob's Job.
  failed = attempt is not None and attempt.outcome in state.NEEDS_A_PERSON
  return 1 if failed or waits else 0


def _report(options, attempt, argv) -> bool:
  """A tick's outcome, and what waits for a person, on stdout; whether
  anything waits."""
  from imgcls.retrain import person, state
  if attempt is None:
    print('no retraining: no new data, or fewer new images than '
          '--min-new-images')
  else:
    print(f'{attempt.data_key}: {attempt.outcome}'
          f'{" version " + attempt.version if attempt.version else ""}'
          f'{f" (answered with {attempt.answer})" if attempt.answer else ""}'
          f'{": " + attempt.detail if attempt.detail else ""}')
  pending = person.waiting(state.load(options.pipeline.pipeline_root),
                           options.pipeline)
  if pending:
    print('\n'.join(person.describe(pending, argv)), flush=True)
  return pending is not None


def _status(config, argv) -> int:
  """The last attempt, and what waits for a person; reads the state only."""
  from imgcls.retrain import person, state
  retrain_state = state.load(config.pipeline_root)
  last = retrain_state.current()
  print(f'retrain state: {state.state_path(config.pipeline_root)}')
  if last is None:
    print('nothing retrained yet')
    return 0
  print(f'last: {last.data_key} {last.outcome}'
        f'{" version " + last.version if last.version else ""}'
        f' (attempt {last.attempts}, {last.updated})'
        f'{", answered with " + last.answer if last.answer else ""}'
        f'{": " + last.detail if last.detail else ""}')
  pending = person.waiting(retrain_state, config)
  if pending:
    print('\n'.join(person.describe(pending, argv)))
  elif last.outcome in state.RETRIABLE:
    print('nothing waits for a person: the next tick tries again')
  else:
    print('nothing waits for a person')
  return 0


def _kfp_target(args: argparse.Namespace, rounds: RoundSettings):
  from imgcls.retrain import kfp_runs
  kfp = settings.from_args(kubeflow_config.KubeflowOptions, args, prefix='kfp')
  return kfp_runs.KfpTarget(
      host=args.kfp_host,
      # The Trainer's resources as `imgcls compile` takes them.
      options=settings.from_args(
          kubeflow_config.KubeflowOptions, args,
          names=kubeflow_config.RESOURCES, image=kfp.image,
          pipeline_root=kfp.pipeline_root,
          image_pull_secret=kfp.image_pull_secret),
      namespace=args.kfp_namespace,
      token=args.kfp_token,
      token_file=args.kfp_token_file,
      timeout_s=rounds.kfp_timeout * 3600)
