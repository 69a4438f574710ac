"""Kubeflow settings in one place; the CLI builds its flags from these defaults.

PipelineConfig says what the pipeline does; KubeflowOptions how its steps run
on the cluster. This module imports no TFX, so `imgcls --help` stays instant.
"""
import argparse
import dataclasses
from typing import Optional, Tuple

from imgcls.contract import deployment
from imgcls.pipeline import config as pipeline_config

# Where the PVCs are mounted in the steps' pods: the same paths as in the
# retrain CronJob and TF Serving, all from kubernetes/params/params.env.
DATA_MOUNT = deployment.data_mount()
SERVING_MOUNT = deployment.serving_mount()
# TF Serving's headless Service, in the namespace the steps run in: its name
# resolves to every ready pod (params.env SERVING_PODS_SERVICE).
SERVING_PODS = deployment.serving_pods_service()


@dataclasses.dataclass(frozen=True)
class KubeflowOptions:
  # The project's image (the repository's Dockerfile), for every step;
  # params.env IMGCLS_IMAGE, as the retrain CronJob's.
  image: str = deployment.imgcls_image()
  # The artifacts' object store (gs://, s3:// or minio://, the schemes KFP's
  # launcher handles), or '' for the namespace's own: the `defaultPipelineRoot`
  # of its kfp-launcher ConfigMap, which KFP's driver reads when a run names
  # no root (backend/src/v2/driver/root_dag.go, v2/config/env.go). In a
  # multi-user install that is the one prefix the profile's object-store
  # credential may write, private-artifacts/<namespace>/ (kubeflow/manifests,
  # pipelines-profile-controller/sync.py).
  pipeline_root: str = ''
  # GPUs of the Trainer; 0 trains on CPU.
  gpus: int = 1
  # The Trainer's requests and limits, as Kubernetes quantities.
  trainer_cpu: str = '4'
  trainer_memory: str = '16Gi'
  # Every other step's requests and limits, so that a namespace with a
  # ResourceQuota admits it.
  step_cpu: str = '1'
  step_memory: str = '4Gi'
  # (label, value) of GPU nodes, or None; params.env GPU_NODE_LABEL(_VALUE),
  # which kubernetes/overlays/gpu requires too.
  gpu_node_selector: Optional[Tuple[str, str]] = deployment.gpu_node_selector()
  # params.env DATA_PVC and SERVING_PVC (kubernetes/storage).
  data_pvc: str = deployment.data_pvc()
  serving_pvc: str = deployment.serving_pvc()


def add_kubeflow_args(parser: argparse.ArgumentParser) -> None:
  """The PipelineConfig flags with defaults for the pods, and KubeflowOptions.

  The parser needs conflict_handler='resolve': --pipeline-root is a bucket
  here, not the local runner's directory.
  """
  d = KubeflowOptions()
  pipeline_config.add_pipeline_args(parser, paths_required=False)
  parser.set_defaults(data_root=DATA_MOUNT, serving_dir=SERVING_MOUNT)
  parser.add_argument('--verify-serving', nargs='?', const=SERVING_PODS,
                      metavar='HOST',
                      help='add a last step: once the Pusher has published, '
                      'every address of HOST (without HOST: '
                      f'{SERVING_PODS}, each ready TF Serving pod) must have '
                      'the new version AVAILABLE and answer its test images '
                      'over REST and gRPC as the model does in-process; '
                      'otherwise the push is rolled back and the run fails')
  parser.add_argument('--pipeline-root', default=d.pipeline_root,
                      help='object store for the artifacts: gs://, s3:// or '
                      'minio://, which KFP\'s launcher has credentials for; '
                      'default: the namespace\'s own, the defaultPipelineRoot '
                      'of its kfp-launcher ConfigMap')
  parser.add_argument('--image', default=d.image,
                      help='the project\'s image, for every step; default '
                      f'{d.image}')
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
                      f'{"=".join(d.gpu_node_selector)}')
  parser.add_argument('--data-pvc', default=d.data_pvc,
                      help=f'PVC with the data, mounted at {DATA_MOUNT}; '
                      f'default {d.data_pvc}')
  parser.add_argument('--serving-pvc', default=d.serving_pvc,
                      help='PVC of the serving directory, mounted at '
                      f'{SERVING_MOUNT}; default {d.serving_pvc}')


def add_resource_args(parser: argparse.ArgumentParser) -> None:
  """--gpus, --trainer-cpu, --trainer-memory: shared with `imgcls retrain`,
  whose CronJob passes them through to the runs it submits."""
  d = KubeflowOptions()
  parser.add_argument('--gpus', type=int, default=d.gpus,
                      help=f'GPUs for the Trainer (0: CPU); default {d.gpus}')
  parser.add_argument('--trainer-cpu', default=d.trainer_cpu,
                      help='CPU request and limit of the Trainer; default '
                      f'{d.trainer_cpu}')
  parser.add_argument('--trainer-memory', default=d.trainer_memory,
                      help='memory request and limit of the Trainer; default '
                      f'{d.trainer_memory}')


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
  # The pipeline root is KubeflowOptions'; PipelineConfig's is a local one.
  config = pipeline_config.pipeline_config_from_args(
      argparse.Namespace(**{**vars(args), 'pipeline_root': None}))
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
      serving_pvc=args.serving_pvc)
