"""VersionedPusher: atomic, always-increasing integer versions that say where
they came from and warm TF Serving up.

TFX's stock Pusher names versions by Unix time and copies into the version
directory in place, saved_model.pb last (tensorflow/tfx@v1.21.0:
tfx/components/pusher/executor.py, with tfx/utils/io_utils.py's copy_dir and
copy_file): TF Serving loads a version as soon as its directory appears, and
without saved_model.pb that load fails instead of loading half the variables.
The version is still visible while it is copied, and saved_model.pb itself is
written in place. This one copies into a hidden temporary directory and
renames it to the next integer (serving_dir.versions),
keeps the newest `keep_versions` (a declared execution parameter, defaulted
by PipelineConfig), and does not publish the same trained model
twice: a re-run on unchanged data (a cached Trainer) leaves the serving
directory as it is.

Into each version, before it is renamed into place, it writes in
`assets.extra/`:
- its provenance (serving_dir.provenance): the model artifact, the MLMD run,
  the spans trained on, the test accuracy and the baseline it was gated
  against, when it was pushed; what `imgcls versions` shows;
- warm-up requests (serving_dir.warmup): a few real test images through
  serving_bytes and serving_default, at batch sizes 1 and several, which TF
  Serving replays before the version is AVAILABLE.

It is TFX's Pusher with three more optional inputs, the ones that hold those
facts: the Examples (spans, test images), the Evaluator's evaluation
(accuracies) and the ServingBaseline (the baseline's version).
"""
import json
import logging
import os
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import proto_utils

from imgcls.components import gated_evaluator, serving_baseline
from imgcls.contract import names, storage
from imgcls.imagedata import preprocessing, tf_examples
from imgcls.serving_dir import provenance as provenance_lib
from imgcls.serving_dir import versions as model_versions
from imgcls.serving_dir import warmup

KEEP_VERSIONS_KEY = 'keep_versions'
# Test images in the warm-up file; each goes through both image signatures
# alone and in one batch with the others.
WARMUP_IMAGES = 4


class VersionedPusherSpec(specs.PusherSpec):
  PARAMETERS = {
      **specs.PusherSpec.PARAMETERS,
      KEEP_VERSIONS_KEY: ExecutionParameter(type=int),
  }
  INPUTS = {
      **specs.PusherSpec.INPUTS,
      specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples,
                                           optional=True),
      specs.EVALUATION_KEY: ChannelParameter(
          type=standard_artifacts.ModelEvaluation, optional=True),
      specs.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model,
                                                 optional=True),
  }


class Executor(pusher_executor.Executor):

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    pushed = artifact_utils.get_single_instance(
        output_dict[specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(pushed)
      return
    model = artifact_utils.get_single_instance(input_dict[specs.MODEL_KEY])
    base_dir = _base_directory(exec_properties)
    already = _version_of(base_dir, model.uri)
    if already is not None:
      logging.warning('this model is already published as %s/%d; nothing new '
                      'pushed', base_dir, already)
      self._MarkNotPushed(pushed)
      pushed.set_string_custom_property(names.PROP_ALREADY_PUBLISHED,
                                        str(already))
      return
    source = self.GetModelPath(input_dict)
    provenance = self._provenance(model, input_dict)
    requests = _warmup_requests(source, os.path.basename(base_dir),
                                _test_images(input_dict))

    def write(tmp_dir: str) -> None:
      storage.copytree(source, tmp_dir)
      provenance_lib.write_into(tmp_dir, provenance)
      if requests:
        warmup.write_requests(tmp_dir, requests)

    version = model_versions.publish(base_dir, write)
    destination = os.path.join(base_dir, str(version))
    # int(): a KFP parameter may arrive as a JSON number (a float).
    removed = model_versions.prune(base_dir,
                                   int(exec_properties[KEEP_VERSIONS_KEY]))
    logging.info('pushed %s (removed old versions %s)', destination, removed)
    self._MarkPushed(pushed, pushed_destination=destination,
                     pushed_version=str(version))

  def _provenance(self, model, input_dict) -> provenance_lib.Provenance:
    context = self._context
    accuracy, baseline_accuracy = _accuracies(input_dict)
    return provenance_lib.Provenance(
        pushed_at=provenance_lib.utc_now(),
        model_uri=model.uri,
        model_id=model.id,
        pipeline_name=(context.pipeline_info.id
                       if context and context.pipeline_info else ''),
        pipeline_run_id=(context.pipeline_run_id or '') if context else '',
        train_spans=_train_spans(input_dict),
        accuracy=accuracy,
        baseline_version=_baseline_version(input_dict),
        baseline_accuracy=baseline_accuracy)


class VersionedPusher(base_component.BaseComponent):
  """TFX's Pusher, with this executor and the inputs its provenance needs."""
  SPEC_CLASS = VersionedPusherSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(self, model: types.BaseChannel,
               model_blessing: types.BaseChannel,
               infra_blessing: types.BaseChannel, base_directory: str,
               keep_versions: int,
               examples: Optional[types.BaseChannel] = None,
               evaluation: Optional[types.BaseChannel] = None,
               baseline_model: Optional[types.BaseChannel] = None):
    super().__init__(spec=VersionedPusherSpec(
        model=model, model_blessing=model_blessing,
        infra_blessing=infra_blessing, examples=examples,
        evaluation=evaluation, baseline_model=baseline_model,
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=base_directory)),
        keep_versions=keep_versions,
        pushed_model=types.Channel(type=standard_artifacts.PushedModel)))


def _base_directory(exec_properties) -> str:
  destination = pusher_pb2.PushDestination()
  proto_utils.json_to_proto(exec_properties[specs.PUSH_DESTINATION_KEY],
                            destination)
  return destination.filesystem.base_directory


def _version_of(base_dir: str, model_uri: str) -> Optional[int]:
  """The published version made from model_uri, if there is one."""
  for version in reversed(model_versions.versions(base_dir)):
    try:
      found = provenance_lib.of_version(os.path.join(base_dir, str(version)))
    except provenance_lib.ProvenanceError as e:
      logging.warning('%s', e)
      continue
    if found.model_uri == model_uri:
      return version
  return None


def _single(input_dict, key: str):
  artifacts = input_dict.get(key) or []
  return artifacts[0] if artifacts else None


def _train_spans(input_dict) -> List[int]:
  examples = _single(input_dict, specs.EXAMPLES_KEY)
  if examples is None or not examples.has_custom_property(
      names.PROP_TRAIN_SPANS):
    return []
  return json.loads(examples.get_string_custom_property(names.PROP_TRAIN_SPANS))


def _baseline_version(input_dict) -> Optional[int]:
  baseline = _single(input_dict, specs.BASELINE_MODEL_KEY)
  if baseline is None or not serving_baseline.has_model(baseline):
    return None
  return baseline.get_int_custom_property(names.PROP_SERVING_VERSION)


def _accuracies(input_dict):
  """(candidate, baseline) accuracy on the whole test split, from TFMA."""
  evaluation = _single(input_dict, specs.EVALUATION_KEY)
  if evaluation is None:
    return None, None
  found = gated_evaluator.accuracies(evaluation.uri)
  return found.candidate, found.baseline


def _test_images(input_dict) -> List[bytes]:
  examples = _single(input_dict, specs.EXAMPLES_KEY)
  if examples is None:
    return []
  batch = next(tf_examples.test_records(examples.uri, WARMUP_IMAGES,
                                        WARMUP_IMAGES), [])
  if not batch:
    return []
  return list(tf_examples.parse_image_bytes(tf.constant(batch)).numpy())


def _warmup_requests(
    model_dir: str, model_name: str,
    images: Sequence[bytes]) -> List[predict_pb2.PredictRequest]:
  """Each image signature, with one image and with all of them."""
  if not images:
    logging.warning('no test images: %s gets no warm-up requests', model_dir)
    return []
  pixels = preprocessing.client_pixels(images, _pixel_shape(model_dir))
  inputs = {
      names.SERVING_BYTES: (names.BYTES_INPUT,
                            np.array(list(images), dtype=object)),
      names.SERVING_DEFAULT: (names.PIXELS_INPUT, pixels.astype(np.float32)),
  }
  batches = [slice(0, 1)] + ([slice(None)] if len(images) > 1 else [])
  requests = []
  for signature, (input_name, value) in inputs.items():
    for batch in batches:
      request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
          name=model_name, signature_name=signature))
      request.inputs[input_name].CopyFrom(tf.make_tensor_proto(value[batch]))
      requests.append(request)
  return requests


def _pixel_shape(model_dir: str):
  """(height, width, channels) of serving_default's input, read from
  saved_model.pb without loading the model."""
  with open(os.path.join(model_dir, 'saved_model.pb'), 'rb') as f:
    saved = saved_model_pb2.SavedModel.FromString(f.read())
  signature = saved.meta_graphs[0].signature_def[names.SERVING_DEFAULT]
  dims = signature.inputs[names.PIXELS_INPUT].tensor_shape.dim
  return tuple(d.size for d in dims[1:])
