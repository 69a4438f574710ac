"""ServingBaseline: the model TF Serving publishes now, as the Evaluator's
baseline.

TFX's usual baseline is a Resolver node (LatestBlessedModelStrategy), which
Kubeflow Pipelines' own backend rejects ("resolver executors not
implemented"). The model that matters is the one being served anyway, so this
component copies the newest version under the serving directory into a Model
artifact. With nothing published yet, the artifact says so (`has_model` 0)
and the Evaluator judges the candidate by the value threshold alone.
"""
import os

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model
from tfx.utils import path_utils

from imgcls.contract import names, storage
from imgcls.serving_dir import versions as model_versions


def has_model(baseline: Model) -> bool:
  return baseline.get_int_custom_property(names.PROP_HAS_MODEL) == 1


@component
def ServingBaseline(  # TFX component naming
    model_base_path: Parameter[str],
    published_hint: Parameter[str],
    baseline: OutputArtifact[Model],
    served_version: OutputArtifact[Model]) -> None:
  """Copies <model_base_path>/<newest version> into `baseline`.

  `served_version` says the same (has_model, the version) with no files:
  the Pusher records the version in its provenance and needs nothing else,
  while KFP's launcher would download the whole `baseline` SavedModel for
  it (kubeflow/pipelines@2.16.1:backend/src/v2/component/
  launcher_v2.go, downloadArtifacts). Its name shares no prefix with
  `baseline`: the launcher downloads an input by listing its URI as a key
  prefix (objectstore/object_store.go, DownloadBlob).

  `published_hint` is the newest version seen when the pipeline was built;
  it exists so that the cache key changes when the serving directory does.
  """
  del published_hint
  source = model_versions.latest_version_dir(model_base_path)
  if source is not None:
    storage.copytree(source, path_utils.serving_model_dir(baseline.uri))
  for artifact in (baseline, served_version):
    artifact.set_int_custom_property(names.PROP_HAS_MODEL,
                                     int(source is not None))
    if source is not None:
      artifact.set_int_custom_property(names.PROP_SERVING_VERSION,
                                       int(os.path.basename(source)))
