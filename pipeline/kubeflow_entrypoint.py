"""The command of every step on Kubeflow Pipelines: TFX's executor entrypoint,
with the executor input reconciled with what KFP 2's launcher provides.

    python -m pipeline.kubeflow_entrypoint --executor_class_path CLASS \\
        --json_serialized_invocation_args '{{$}}' \\
        --json_serialized_inputs_spec_args INPUT_TYPES [BEAM ARGS]

TFX's entrypoint (kubeflow_v2_run_executor) is written for Vertex AI. On KFP's
own backend (checked against the 2.16.1 sources) these things differ, which
sky-uk/kfp-operator's tfx-patch patches inside TFX at runtime; here they are
handled in the input, before TFX sees it:

1. Input artifacts come without their type. The driver rebuilds them from
   MLMD with an empty `instance_schema`, and TFX needs the type to pick the
   artifact class (it fails on yaml.safe_load('') being None). The step's
   input types are on its own command line; they are copied from there.
2. The launcher adds an output `executor-logs` of type `system.Artifact`, a
   title TFX has no class for. The launcher writes the logs into it itself and
   ignores what the executor reports for it, so TFX does not get to see it.
3. Artifact URIs are object-store URIs (minio://, s3://, gs://), which the
   launcher downloads to and uploads from local paths (/minio/..., /s3/...,
   /gcs/...); TensorFlow cannot open minio:// or s3:// at all. So TFX reads
   and writes the local paths, and the remote URIs go back in its output
   metadata for the launcher to upload and record. Nothing writes to the store
   directly, so no zero-byte "directory" objects appear there, which KFP's
   launcher downloads as files and then cannot create the model's
   subdirectories under (kubeflow/pipelines#13476, the `Format-Serving` case).
   Local paths are kept out of what is recorded: any metadata value, a
   blessing's model URIs for one, and the Pusher's provenance get the remote
   URI back.
4. Input metadata went through MLMD (backend/src/v2/metadata/converter.go):
   lists came back as {"list": [...]}, structs as {"struct": {...}}; they are
   unwrapped. On the way out, a null metadata value fails the launcher's
   conversion (StructValueToMLMDValue), so none is reported.
5. Outputs whose TFX names share a prefix are named apart in the spec
   (names.KFP_OUTPUT_NAMES): TFX gets its own names, the launcher the spec's.
6. Once the outputs are written the process exits at once (os._exit): the
   interpreter's shutdown can crash ("pure virtual method called",
   sky-uk/kfp-operator PR #1286) and turn a finished step into a failed one.
"""
import json
import logging
import os
import sys

from absl import app
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

from imgcls.contract import files, names

# The launcher's mapping of remote URIs to local paths (LocalPathForURI).
LOCAL_ROOTS = {'gs://': '/gcs/', 'minio://': '/minio/', 's3://': '/s3/'}
# Titles of KFP's own artifact types.
_KFP_TYPE_PREFIX = 'system.'
# How converter.go wraps lists and structs it stores in MLMD.
_MLMD_WRAPPERS = ('list', 'struct')


def to_local(uri: str) -> str:
  for remote, local in LOCAL_ROOTS.items():
    if uri.startswith(remote):
      return local + uri[len(remote):]
  return uri


def to_remote(path: str) -> str:
  for remote, local in LOCAL_ROOTS.items():
    if path.startswith(local):
      return remote + path[len(local):]
  return path


def reconcile(executor_input: pipeline_spec_pb2.ExecutorInput,
              inputs_spec: pipeline_spec_pb2.ComponentInputsSpec) -> None:
  """Types inputs, drops KFP's own outputs, points URIs at local paths."""
  for name, artifacts in executor_input.inputs.artifacts.items():
    for artifact in artifacts.artifacts:
      if name in inputs_spec.artifacts:
        artifact.type.CopyFrom(inputs_spec.artifacts[name].artifact_type)
      artifact.uri = to_local(artifact.uri)
      _unwrap_mlmd_values(artifact.metadata)
  outputs = executor_input.outputs.artifacts
  for name in [
      name for name, artifacts in outputs.items() if any(
          a.type.schema_title.startswith(_KFP_TYPE_PREFIX)
          for a in artifacts.artifacts)
  ]:
    del outputs[name]
  for artifacts in outputs.values():
    for artifact in artifacts.artifacts:
      artifact.uri = to_local(artifact.uri)
  _rename(outputs, {spec_name: tfx_name for tfx_name, spec_name
                    in names.KFP_OUTPUT_NAMES.items()})


def _rename(artifacts, renames) -> None:
  """Moves the artifact lists of a map keyed by output name."""
  for old, new in renames.items():
    if old in artifacts:
      artifacts[new].CopyFrom(artifacts[old])
      del artifacts[old]


def _unwrap_mlmd_values(metadata: struct_pb2.Struct) -> None:
  """{"list": [...]} and {"struct": {...}} as the producer wrote them."""
  for key, value in metadata.fields.items():
    fields = value.struct_value.fields
    if value.HasField('struct_value') and len(fields) == 1 and (
        next(iter(fields)) in _MLMD_WRAPPERS):
      metadata.fields[key].CopyFrom(next(iter(fields.values())))


def _recordable(metadata: struct_pb2.Struct) -> None:
  """No nulls (the launcher fails on them); remote URIs, not local paths."""
  for key in list(metadata.fields):
    value = metadata.fields[key]
    if value.HasField('null_value'):
      logging.warning('dropping metadata %r: null, which KFP cannot record',
                      key)
      del metadata.fields[key]
    elif value.HasField('string_value'):
      value.string_value = to_remote(value.string_value)


def restore_remote_uris(output_metadata_file: str) -> None:
  """Puts the remote URIs back into the ExecutorOutput that TFX wrote, and
  makes its metadata recordable."""
  output = pipeline_spec_pb2.ExecutorOutput()
  try:
    with open(output_metadata_file) as f:
      json_format.Parse(f.read(), output, ignore_unknown_fields=True)
  except FileNotFoundError:
    return
  for artifacts in output.artifacts.values():
    for artifact in artifacts.artifacts:
      artifact.uri = to_remote(artifact.uri)
      _recordable(artifact.metadata)
      _remote_provenance(artifact.metadata)
  _rename(output.artifacts, names.KFP_OUTPUT_NAMES)
  with open(output_metadata_file, 'w') as f:
    f.write(json_format.MessageToJson(output))


def _remote_provenance(metadata: struct_pb2.Struct) -> None:
  """The provenance of a version the Pusher published, with remote URIs.

  The Pusher records the model's URI as it saw it, the local path; the
  remote one is what names the run (<root>/<pipeline>/<run ID>/...).
  Replaced atomically; TF Serving ignores assets.extra.
  """
  destination = metadata.fields.get(names.PROP_PUSHED_DESTINATION)
  if destination is None or not destination.string_value:
    return
  path = os.path.join(destination.string_value, names.PROVENANCE_FILE)
  try:
    with open(path) as f:
      provenance = json.load(f)
  except FileNotFoundError:
    return
  remote = {k: to_remote(v) if isinstance(v, str) else v
            for k, v in provenance.items()}
  files.write_json_atomically(path, remote)


def main(parsed_argv) -> None:
  args, beam_args = parsed_argv
  executor_input = pipeline_spec_pb2.ExecutorInput()
  json_format.Parse(args.json_serialized_invocation_args, executor_input,
                    ignore_unknown_fields=True)
  inputs_spec = pipeline_spec_pb2.ComponentInputsSpec()
  json_format.Parse(args.json_serialized_inputs_spec_args or '{}',
                    inputs_spec, ignore_unknown_fields=True)
  reconcile(executor_input, inputs_spec)
  args.json_serialized_invocation_args = json_format.MessageToJson(
      executor_input)
  kubeflow_v2_run_executor.main((args, beam_args))
  restore_remote_uris(executor_input.outputs.output_file)


def main_then_exit(parsed_argv) -> None:
  """main, then an exit that skips the interpreter's shutdown (see 6.)."""
  main(parsed_argv)
  logging.shutdown()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(0)


if __name__ == '__main__':
  # TFX's own flags: the step's command line is the one TFX compiles.
  app.run(main_then_exit, flags_parser=kubeflow_v2_run_executor._parse_flags)
