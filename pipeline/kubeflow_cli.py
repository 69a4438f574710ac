"""`imgcls compile` and `imgcls submit`: the pipeline on Kubeflow Pipelines."""
import argparse
import os
import tempfile

from imgcls.contract.errors import UserError
from imgcls.pipeline import kubeflow_config

_PATHS = ('--data-root and --serving-dir are paths in the pipeline\'s pods: '
          'the data PVC is mounted at params.env\'s DATA_MOUNT, the serving '
          'PVC at its SERVING_MOUNT (the defaults of both flags).')
DEFAULT_CRON = '0 3 * * *'


def register(subparsers) -> None:
  compile_parser = subparsers.add_parser(
      'compile', conflict_handler='resolve',
      help='compile the pipeline for Kubeflow Pipelines (a KFP 2 package)',
      description='Writes the YAML package that `imgcls submit --package` or '
      'the KFP UI uploads. ' + _PATHS)
  compile_parser.add_argument('--output', default='pipeline.yaml',
                              help='default pipeline.yaml')
  kubeflow_config.add_kubeflow_args(compile_parser)
  compile_parser.set_defaults(handler=_compile)

  submit = subparsers.add_parser(
      'submit', conflict_handler='resolve',
      help='upload the pipeline to Kubeflow Pipelines and start a run',
      description='Compiles (unless given --package), uploads the pipeline, '
      'or a new version of it when its name exists, and starts a run or a '
      'recurring run; prints its ID and URL. ' + _PATHS)
  submit.add_argument('--host',
                      help='KFP\'s API, e.g. http://localhost:8080 after '
                      '`kubectl port-forward -n kubeflow svc/ml-pipeline-ui '
                      '8080:80`; without it, KFP is reached through the kube '
                      'context\'s API server, which works for single-user '
                      'KFP only (with a token: its in-cluster address, '
                      'inside a pod)')
  submit.add_argument('--token',
                      help='bearer token for KFP\'s API (multi-user '
                      'installs), e.g. $(kubectl create token SA -n NS '
                      '--audience=pipelines.kubeflow.org); needs --host '
                      'outside a cluster')
  submit.add_argument('--token-file',
                      help='a file holding the token, re-read on every '
                      'request (a projected ServiceAccount token); default '
                      '$KF_PIPELINES_SA_TOKEN_PATH, else '
                      '/var/run/secrets/kubeflow/pipelines/token when it '
                      'exists')
  submit.add_argument('--kube-context',
                      help='kubeconfig context to use when there is no '
                      '--host; single-user KFP only: the Kubernetes API '
                      'server drops the token a multi-user KFP needs')
  submit.add_argument('--namespace',
                      help='your profile namespace, where the pipeline, '
                      'experiment and run are created (multi-user installs); '
                      'not where KFP runs, which --host names')
  submit.add_argument('--experiment', default='imgcls',
                      help='created if missing; default imgcls')
  submit.add_argument('--run-name', help='default "<pipeline> <UTC time>"')
  submit.add_argument('--param', action='append', default=[],
                      type=kubeflow_config.parse_key_value, metavar='KEY=VALUE',
                      help='a pipeline parameter of this run, e.g. '
                      'data_root=/data/2024-06 (repeatable)')
  submit.add_argument('--recurring', action='store_true',
                      help='create a recurring run on --cron instead of a run')
  submit.add_argument('--cron',
                      help='when the recurring run starts: five cron fields, '
                      'in the KFP controller\'s time zone (normally UTC); '
                      f'default "{DEFAULT_CRON}"')
  submit.add_argument('--package',
                      help='a package from `imgcls compile`, instead of '
                      'compiling (the compile flags are then unused)')
  kubeflow_config.add_kubeflow_args(submit)
  submit.set_defaults(handler=_submit)


def _compile(args: argparse.Namespace) -> int:
  if not args.output.endswith(('.yaml', '.yml')):
    # kfp's compiler writes a spec with platform settings (PVC mounts, node
    # selectors) as YAML only.
    raise UserError(f'--output {args.output}: the package is YAML; name a '
                    '.yaml file')
  _check_writable(args.output)
  from imgcls.pipeline import kubeflow
  print(kubeflow.compile_pipeline(*kubeflow_config.from_args(args),
                                  args.output))
  return 0


def _check_writable(output: str) -> None:
  """Before the compile: the package can be written at `output`, into
  folders made where missing."""
  if os.path.isdir(output):
    raise UserError(f'--output {output}: is a directory; name a file')
  folder = os.path.dirname(os.path.abspath(output))
  while not os.path.exists(folder):
    folder = os.path.dirname(folder)
  if not os.path.isdir(folder):
    raise UserError(f'--output {output}: {folder} is a file, not a folder')
  try:
    # A nameless file (O_TMPFILE where the OS has it): nothing is left.
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as e:
    raise UserError(f'--output {output}: cannot create a file in {folder}: '
                    f'{e.strerror or e}') from None


def _submit(args: argparse.Namespace) -> int:
  from imgcls.pipeline import kubeflow
  if args.cron and not args.recurring:
    raise UserError('--cron schedules a recurring run: add --recurring')
  submit_args = dict(
      host=args.host,
      experiment=args.experiment,
      run_name=args.run_name,
      params=dict(args.param),
      cron=(args.cron or DEFAULT_CRON) if args.recurring else None,
      token=args.token,
      token_file=args.token_file,
      namespace=args.namespace,
      kube_context=args.kube_context)
  if args.package:
    run_id = kubeflow.submit(args.package, **submit_args)
  else:
    config, options = kubeflow_config.from_args(args)
    run_id = kubeflow.submit_pipeline(config, options=options, **submit_args)
  kind = 'recurring run' if args.recurring else 'run'
  where = (kubeflow.run_url(args.host, run_id, args.recurring)
           if args.host else 'see the Kubeflow Pipelines UI')
  print(f'{kind} {run_id}: {where}')
  return 0
