"""What the REST and gRPC front ends ask of the server, in TF Serving's terms.

A request names a model and, optionally, a version or a version label (a
ModelSpec). `ServingCore` finds the servable for it as ServerCore does
(server_core.cc, ServableRequestFromModelSpec) and builds the status and
metadata protos; both front ends then only translate to their wire format, so
they give the same answers and the same errors with the same messages.
"""
from typing import Optional

import grpc
from tensorflow_serving.apis import (
  get_model_metadata_pb2,
  get_model_status_pb2,
  model_pb2,
)

from imgcls.clients.status import invalid_argument, not_found
from imgcls.dev_server.registry import ModelRegistry
from imgcls.dev_server.servable import Servable

SIGNATURE_DEF_FIELD = 'signature_def'


def _servable_request_text(name: str, version: Optional[int]) -> str:
  """How TF Serving's ServableRequest describes itself in errors."""
  if version is None:
    return f'Latest({name})'
  return f'Specific({name}, {version})'


class ServingCore:
  """Resolves ModelSpecs against the models of a registry."""

  def __init__(self, registry: ModelRegistry):
    self._registry = registry

  def servable(self, name: str, version: Optional[int] = None,
               label: Optional[str] = None) -> Servable:
    if not name:
      raise invalid_argument('ModelSpec has no name specified.')
    if label is not None:
      version = self._registry.version_for_label(name, label)
    versions = self._registry.versions(name)
    servable = versions.servable(version) if versions else None
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
    """The state of `version`, or of every version seen, newest first.

    A label is ignored, and every version listed, as GetModelStatusImpl does
    (it looks only at model_spec.version).
    """
    del label
    versions = self._registry.versions(name)
    states = versions.states() if versions else {}
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
        model_spec=served_spec(name, servable))
    response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map)
    return response



def served_spec(name: str, servable: Servable,
                signature_name: str = '') -> model_pb2.ModelSpec:
  """The ModelSpec a response carries: what actually answered."""
  spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
  spec.version.value = servable.version
  return spec
