"""Kubeflow settings in one place; the CLI builds its flags from these defaults.

PipelineConfig says what the pipeline does; KubeflowOptions how its steps run
on the cluster. This module imports no TFX, so `imgcls --help` stays instant.

The deployment's names (kubernetes/params/params.env, imgcls.contract.
deployment) are read when a command compiles, never on import or while the
flags are built: with the file missing, `imgcls --help` works, and `imgcls
compile` names the file it needs. A default that the file gives is
FROM_PARAMS until KubeflowOptions.resolved() reads it.
"""
import argparse
import dataclasses
from typing import Any, Optional, Tuple, Union

from imgcls.contract import deployment
from imgcls.pipeline import config as pipeline_config


class _FromParams:
  """The default of a setting that the params file gives."""

  def __repr__(self) -> str:
    return f'from the params file (${deployment.PARAMS_FILE_ENV})'


FROM_PARAMS: Any = _FromParams()

# Where the PVCs are mounted in the steps' pods (params.env DATA_MOUNT,
# SERVING_MOUNT): the same paths as in the retrain CronJob and TF Serving.
# TF Serving's headless Service, in the namespace the steps run in: its name
# resolves to every ready pod (params.env SERVING_PODS_SERVICE). Read on
# first use (PEP 562), by pipeline.kubeflow as it compiles.
_READ_ON_USE = {
    'DATA_MOUNT': deployment.data_mount,
    'SERVING_MOUNT': deployment.serving_mount,
    'SERVING_PODS': deployment.serving_pods_service,
}


def __getattr__(name: str) -> str:
  try:
    return _READ_ON_USE[name]()
  except KeyError:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}'
                        ) from None


@dataclasses.dataclass(frozen=True)
class KubeflowOptions:
  """How the steps run; FROM_PARAMS fields are filled by resolved()."""
  # The project's image (the repository's Dockerfile), for every step;
  # params.env IMGCLS_IMAGE, as the retrain CronJob's.
  image: str = FROM_PARAMS
  # The artifacts' object store (gs://, s3:// or minio://, the schemes KFP's
  # launcher handles), or '' for the namespace's own: the `defaultPipelineRoot`
  # of its kfp-launcher ConfigMap, which KFP's driver reads when a run names
  # no root (backend/src/v2/driver/root_dag.go, v2/config/env.go). In a
  # multi-user install that is the one prefix the profile's object-store
  # credential may write, private-artifacts/<namespace>/ (kubeflow/manifests,
  # pipelines-profile-controller/sync.py).
  pipeline_root: str = ''
  # GPUs of the Trainer, 0 trains on CPU; its requests and limits, as
  # Kubernetes quantities: params.env TRAINER_GPUS, TRAINER_CPU and
  # TRAINER_MEMORY, as the retrain CronJob's.
  gpus: int = FROM_PARAMS
  trainer_cpu: str = FROM_PARAMS
  trainer_memory: str = FROM_PARAMS
  # Every other step's requests and limits. A namespace with a ResourceQuota
  # needs kubernetes/components/limit-range too: Argo's `wait` container in
  # every pod gets none from KFP.
  step_cpu: str = '1'
  step_memory: str = '4Gi'
  # (label, value) of GPU nodes, or None; params.env GPU_NODE_LABEL(_VALUE),
  # which kubernetes/overlays/gpu requires too.
  gpu_node_selector: Union[Optional[Tuple[str, str]], _FromParams] = FROM_PARAMS
  # params.env DATA_PVC and SERVING_PVC (kubernetes/storage).
  data_pvc: str = FROM_PARAMS
  serving_pvc: str = FROM_PARAMS

  def resolved(self) -> 'KubeflowOptions':
    """With every FROM_PARAMS value read from the params file (UserError
    naming the file if it is missing)."""
    return dataclasses.replace(self, **{
        name: read() for name, read in _OPTIONS_FROM_PARAMS.items()
        if getattr(self, name) is FROM_PARAMS})


_OPTIONS_FROM_PARAMS = {
    'image': deployment.imgcls_image,
    'gpus': deployment.trainer_gpus,
    'trainer_cpu': deployment.trainer_cpu,
    'trainer_memory': deployment.trainer_memory,
    'gpu_node_selector': deployment.gpu_node_selector,
    'data_pvc': deployment.data_pvc,
    'serving_pvc': deployment.serving_pvc,
}


def add_kubeflow_args(parser: argparse.ArgumentParser) -> None:
  """The PipelineConfig flags with defaults for the pods, and KubeflowOptions.

  The parser needs conflict_handler='resolve': --pipeline-root is a bucket
  here, not the local runner's directory.
  """
  d = KubeflowOptions()
  pipeline_config.add_pipeline_args(parser, paths_required=False)
  parser.set_defaults(data_root=FROM_PARAMS, serving_dir=FROM_PARAMS)
  parser.add_argument('--verify-serving', nargs='?', const=FROM_PARAMS,
                      metavar='HOST',
                      help='add a last step: once the Pusher has published, '
                      'every address of HOST (without HOST: params.env\'s '
                      'SERVING_PODS_SERVICE, each ready TF Serving pod) must '
                      'have the new version AVAILABLE and answer its test '
                      'images over REST and gRPC as the model does '
                      'in-process; otherwise the push is rolled back and the '
                      'run fails')
  parser.add_argument('--pipeline-root', default=d.pipeline_root,
                      help='object store for the artifacts: gs://, s3:// or '
                      'minio://, which KFP\'s launcher has credentials for; '
                      'default: the namespace\'s own, the defaultPipelineRoot '
                      'of its kfp-launcher ConfigMap')
  parser.add_argument('--image', default=d.image,
                      help='the project\'s image, for every step; default '
                      'params.env\'s IMGCLS_IMAGE')
  add_resource_args(parser)
  parser.add_argument('--step-cpu', default=d.step_cpu,
                      help='CPU request and limit of every other step; '
                      f'default {d.step_cpu}')
  parser.add_argument('--step-memory', default=d.step_memory,
                      help='memory request and limit of every other step; '
                      f'default {d.step_memory}')
  parser.add_argument('--gpu-node-selector', type=_node_selector,
                      default=d.gpu_node_selector, metavar='LABEL=VALUE',
                      help='the label of GPU nodes, "" for none; default '
                      'params.env\'s GPU_NODE_LABEL=GPU_NODE_LABEL_VALUE')
  parser.add_argument('--data-pvc', default=d.data_pvc,
                      help='PVC with the data, mounted at params.env\'s '
                      'DATA_MOUNT; default params.env\'s DATA_PVC')
  parser.add_argument('--serving-pvc', default=d.serving_pvc,
                      help='PVC of the serving directory, mounted at '
                      'params.env\'s SERVING_MOUNT; default params.env\'s '
                      'SERVING_PVC')


def add_resource_args(parser: argparse.ArgumentParser) -> None:
  """--gpus, --trainer-cpu, --trainer-memory: shared with `imgcls retrain`,
  whose CronJob passes them through to the runs it submits."""
  d = KubeflowOptions()
  parser.add_argument('--gpus', type=int, default=d.gpus,
                      help='GPUs for the Trainer (0: CPU); default '
                      'params.env\'s TRAINER_GPUS')
  parser.add_argument('--trainer-cpu', default=d.trainer_cpu,
                      help='CPU request and limit of the Trainer; default '
                      'params.env\'s TRAINER_CPU')
  parser.add_argument('--trainer-memory', default=d.trainer_memory,
                      help='memory request and limit of the Trainer; default '
                      'params.env\'s TRAINER_MEMORY')


def parse_key_value(text: str) -> Tuple[str, str]:
  key, sep, value = text.partition('=')
  if not sep or not key:
    raise argparse.ArgumentTypeError(f'expected KEY=VALUE, got {text!r}')
  return key, value


def _node_selector(text: str) -> Optional[Tuple[str, str]]:
  return parse_key_value(text) if text else None


def from_args(
    args: argparse.Namespace
) -> Tuple[pipeline_config.PipelineConfig, KubeflowOptions]:
  """The settings of `imgcls compile` and `submit`: the params file's
  values are read here, where the command starts."""
  # The pipeline root is KubeflowOptions'; PipelineConfig's is a local one.
  config = pipeline_config.pipeline_config_from_args(
      argparse.Namespace(**{**vars(args), **_paths_in_the_pods(args),
                            'pipeline_root': None}))
  # The Trainer runs in a pod: its weights file is checked there.
  config = pipeline_config.checked_at_start(config, args, local=False)
  return config, KubeflowOptions(
      image=args.image,
      pipeline_root=args.pipeline_root,
      gpus=args.gpus,
      trainer_cpu=args.trainer_cpu,
      trainer_memory=args.trainer_memory,
      step_cpu=args.step_cpu,
      step_memory=args.step_memory,
      gpu_node_selector=args.gpu_node_selector,
      data_pvc=args.data_pvc,
      serving_pvc=args.serving_pvc).resolved()


def _paths_in_the_pods(args: argparse.Namespace) -> dict:
  """--data-root, --serving-dir and --verify-serving's host, with the
  params file's mounts and Service where they were not given."""
  defaults = {'data_root': deployment.data_mount,
              'serving_dir': deployment.serving_mount,
              'verify_serving': deployment.serving_pods_service}
  return {name: read() for name, read in defaults.items()
          if getattr(args, name) is FROM_PARAMS}
