"""Kubeflow settings in one place, each declared once
(imgcls/contract/settings.py); the CLI builds its flags from the
declarations.

PipelineConfig says what the pipeline does; KubeflowOptions how its steps run
on the cluster. This module imports no TFX, so `imgcls --help` stays instant.

The deployment's names (kubernetes/params/params.env, imgcls.contract.
deployment) are read when a command compiles, never on import or while the
flags are built: with the file missing, `imgcls --help` works, and `imgcls
compile` names the file it needs. A default that the file gives is a
FromParams until KubeflowOptions.resolved() reads it.
"""
import argparse
import dataclasses
from typing import Any, Callable, Optional, Tuple

from imgcls.contract import deployment, settings
from imgcls.pipeline import config as pipeline_config


@dataclasses.dataclass(frozen=True)
class FromParams:
  """The default of a setting that the params file gives: `read` reads the
  file's `key` there."""
  key: str
  read: Callable[[], Any]

  def __str__(self) -> str:
    return f"params.env's {self.key}"


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


def parse_key_value(text: str) -> Tuple[str, str]:
  key, sep, value = text.partition('=')
  if not sep or not key:
    raise argparse.ArgumentTypeError(f'expected KEY=VALUE, got {text!r}')
  return key, value


def _node_selector(text: str) -> Optional[Tuple[str, str]]:
  return parse_key_value(text) if text else None


@settings.settings_class
class KubeflowOptions:
  """How the steps run; FromParams values are read by resolved()."""
  # The project's image (the repository's Dockerfile), as the retrain
  # CronJob's.
  image: str = settings.setting(
      FromParams('IMGCLS_IMAGE', deployment.imgcls_image),
      "the project's image, for every step")
  # Or '' for the namespace's own: the `defaultPipelineRoot` of its
  # kfp-launcher ConfigMap, which KFP's driver reads when a run names no root
  # (kubeflow/pipelines: backend/src/v2/driver/root_dag.go,
  # backend/src/v2/config/env.go). In a multi-user install that is the one
  # prefix the profile's object-store credential may write,
  # private-artifacts/<namespace>/ (kubeflow/manifests,
  # pipelines-profile-controller/sync.py).
  pipeline_root: str = settings.setting(
      '', "object store for the artifacts: gs://, s3:// or minio://, the "
      "schemes KFP's launcher has credentials for",
      shown_default="the namespace's own, the defaultPipelineRoot of its "
      'kfp-launcher ConfigMap')
  # The Trainer's requests and limits, as Kubernetes quantities, as the
  # retrain CronJob's.
  gpus: int = settings.setting(
      FromParams('TRAINER_GPUS', deployment.trainer_gpus),
      'GPUs for the Trainer (0: CPU)')
  trainer_cpu: str = settings.setting(
      FromParams('TRAINER_CPU', deployment.trainer_cpu),
      'CPU request and limit of the Trainer')
  trainer_memory: str = settings.setting(
      FromParams('TRAINER_MEMORY', deployment.trainer_memory),
      'memory request and limit of the Trainer')
  # A namespace with a ResourceQuota needs kubernetes/admin's LimitRange
  # too: Argo's `wait` container in every pod gets none from KFP.
  step_cpu: str = settings.setting(
      '1', 'CPU request and limit of every other step')
  step_memory: str = settings.setting(
      '4Gi', 'memory request and limit of every other step')
  # kubernetes/overlays/gpu requires params.env's GPU_NODE_LABEL(_VALUE) too.
  gpu_node_selector: Optional[Tuple[str, str]] = settings.setting(
      FromParams('GPU_NODE_LABEL=GPU_NODE_LABEL_VALUE',
                 deployment.gpu_node_selector),
      'the label of GPU nodes, "" for none', parse=_node_selector,
      metavar='LABEL=VALUE')
  # kubernetes/storage.
  data_pvc: str = settings.setting(
      FromParams('DATA_PVC', deployment.data_pvc),
      "PVC with the data, mounted at params.env's DATA_MOUNT")
  serving_pvc: str = settings.setting(
      FromParams('SERVING_PVC', deployment.serving_pvc),
      "PVC of the serving directory, mounted at params.env's SERVING_MOUNT")

  # A Secret of type kubernetes.io/dockerconfigjson in the namespace. KFP's
  # driver puts it into every step's pod (kubernetes_platform's
  # ImagePullSecret; kubeflow/pipelines: backend/src/v2/driver/k8s.go), as
  # params.env puts it into the manifests' pods.
  image_pull_secret: str = settings.setting(
      FromParams('IMAGE_PULL_SECRET', deployment.image_pull_secret),
      'the Secret that pulls the image of every step from a private '
      'registry, "" for none')

  def resolved(self) -> 'KubeflowOptions':
    """With every FromParams value read from the params file (UserError
    naming the file if it is missing)."""
    return dataclasses.replace(self, **{
        field.name: getattr(self, field.name).read()
        for field in dataclasses.fields(self)
        if isinstance(getattr(self, field.name), FromParams)})


# The Trainer's resources: flags of `imgcls retrain` too, whose CronJob
# passes them through to the runs it submits.
RESOURCES = ('gpus', 'trainer_cpu', 'trainer_memory')


def add_kubeflow_args(parser: argparse.ArgumentParser) -> None:
  """The PipelineConfig flags with defaults for the pods, and KubeflowOptions.

  The parser needs conflict_handler='resolve': --pipeline-root is a bucket
  here, not the local runner's directory.
  """
  pipeline_config.add_pipeline_args(parser, paths_required=False)
  parser.set_defaults(
      data_root=FromParams('DATA_MOUNT', deployment.data_mount),
      serving_dir=FromParams('SERVING_MOUNT', deployment.serving_mount))
  parser.add_argument('--verify-serving', nargs='?', metavar='HOST',
                      const=FromParams('SERVING_PODS_SERVICE',
                                       deployment.serving_pods_service),
                      help='add a last step: once the Pusher has published, '
                      'every address of HOST (without HOST: params.env\'s '
                      'SERVING_PODS_SERVICE, each ready TF Serving pod) must '
                      'have the new version AVAILABLE and answer its test '
                      'images over REST and gRPC as the model does '
                      'in-process; otherwise the push is rolled back and the '
                      'run fails')
  settings.add_flags(parser, KubeflowOptions)


def add_resource_args(parser: argparse.ArgumentParser) -> None:
  settings.add_flags(parser, KubeflowOptions, names=RESOURCES)


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
  return config, settings.from_args(KubeflowOptions, args).resolved()


def _paths_in_the_pods(args: argparse.Namespace) -> dict:
  """--data-root, --serving-dir and --verify-serving's host, with the
  params file's mounts and Service where they were not given."""
  return {name: getattr(args, name).read()
          for name in ('data_root', 'serving_dir', 'verify_serving')
          if isinstance(getattr(args, name), FromParams)}
