"""The command of every step on Kubeflow Pipelines: TFX's executor entrypoint,
with the executor input reconciled with what KFP 2's launcher provides.

    python -m pipeline.kubeflow_entrypoint --executor_class_path CLASS \\
        --json_serialized_invocation_args '{{$}}' \\
        --json_serialized_inputs_spec_args INPUT_TYPES [BEAM ARGS]

TFX's entrypoint (kubeflow_v2_run_executor) is written for Vertex AI. On KFP's
own backend (checked against the 2.16.1 sources) three things differ, which
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
"""
from absl import app
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

# The launcher's mapping of remote URIs to local paths (LocalPathForURI).
LOCAL_ROOTS = {'gs://': '/gcs/', 'minio://': '/minio/', 's3://': '/s3/'}
# Titles of KFP's own artifact types.
_KFP_TYPE_PREFIX = 'system.'


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


def restore_remote_uris(output_metadata_file: str) -> None:
  """Puts the remote URIs back into the ExecutorOutput that TFX wrote."""
  output = pipeline_spec_pb2.ExecutorOutput()
  try:
    with open(output_metadata_file) as f:
      json_format.Parse(f.read(), output, ignore_unknown_fields=True)
  except FileNotFoundError:
    return
  for artifacts in output.artifacts.values():
    for artifact in artifacts.artifacts:
      artifact.uri = to_remote(artifact.uri)
  with open(output_metadata_file, 'w') as f:
    f.write(json_format.MessageToJson(output))


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


if __name__ == '__main__':
  # TFX's own flags: the step's command line is the one TFX compiles.
  app.run(main, flags_parser=kubeflow_v2_run_executor._parse_flags)  # pylint: disable=protected-access
