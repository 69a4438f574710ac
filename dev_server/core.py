"""What the REST and gRPC front ends ask of the server, in TF Serving's terms.

A request names a model and, optionally, a version or a version label (a
ModelSpec). `ServingCore` finds the servable for it and builds the status and
metadata protos; both front ends then only translate to their wire format, so
they give the same answers and the same errors with the same messages.
"""
from typing import Optional

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2

from clients.status import ServingError, invalid_argument, not_found
from dev_server.servable import Servable
from dev_server.versions import ModelVersions

SIGNATURE_DEF_FIELD = 'signature_def'


def _servable_request_text(name: str, version: Optional[int]) -> str:
  """How TF Serving's ServableRequest describes itself in errors."""
  if version is None:
    return f'Latest({name})'
  return f'Specific({name}, {version})'


def _unknown_label(label: str) -> ServingError:
  # This server has no model config, so no labels; TF Serving says the same
  # for a label its config does not define.
  return invalid_argument(f'Unrecognized servable version label: {label}')


class ServingCore:
  """Resolves ModelSpecs against the one model this server serves."""

  def __init__(self, model_name: str, versions: ModelVersions):
    self.model_name = model_name
    self._versions = versions

  def servable(self, name: str, version: Optional[int] = None,
               label: Optional[str] = None) -> Servable:
    if label is not None:
      raise _unknown_label(label)
    servable = (self._versions.servable(version)
                if name == self.model_name else None)
    if servable is None:
      raise not_found('Servable not found for request: ' +
                      _servable_request_text(name, version))
    return servable

  def model_status(
      self,
      name: str,
      version: Optional[int] = None,
      label: Optional[str] = None
  ) -> get_model_status_pb2.GetModelStatusResponse:
    """The state of `version`, or of every version seen, newest first."""
    if label is not None:
      raise _unknown_label(label)
    states = self._versions.states() if name == self.model_name else {}
    if version is not None:
      if version not in states:
        raise not_found(f'Could not find version {version} of model {name}')
      states = {version: states[version]}
    if not states:
      raise not_found(f'Could not find any versions of model {name}')
    response = get_model_status_pb2.GetModelStatusResponse()
    for number in sorted(states, reverse=True):
      state = states[number]
      status = response.model_version_status.add(
          version=number,
          state=get_model_status_pb2.ModelVersionStatus.State.Value(
              state.state))
      status.status.error_code = grpc.StatusCode[state.error_code].value[0]
      status.status.error_message = state.error_message
    return response

  def model_metadata(
      self,
      name: str,
      version: Optional[int] = None,
      label: Optional[str] = None,
      fields=(SIGNATURE_DEF_FIELD,)
  ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """The signature defs of a version, as GetModelMetadata returns them."""
    if not fields:
      raise invalid_argument(
          'GetModelMetadataRequest must specify at least one metadata_field')
    for field in fields:
      if field != SIGNATURE_DEF_FIELD:
        raise invalid_argument(f'Metadata field {field} is not supported')
    servable = self.servable(name, version, label)
    response = get_model_metadata_pb2.GetModelMetadataResponse(
        model_spec=self.served_spec(servable))
    response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map)
    return response

  def served_spec(self, servable: Servable,
                  signature_name: str = '') -> model_pb2.ModelSpec:
    """The ModelSpec a response carries: what actually answered."""
    spec = model_pb2.ModelSpec(name=self.model_name,
                               signature_name=signature_name)
    spec.version.value = servable.version
    return spec
