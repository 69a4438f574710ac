"""The served models and their version labels, as a ModelServerConfig sets them.

TF Serving's ServerCore::ReloadConfig: a config names the models; models
that leave it unload their versions; every label must name a version that
is AVAILABLE when the config is applied (UpdateModelVersionLabelMap), unless
--allow_version_labels_for_unavailable_models, which allows a label that is
not already assigned to another version. A config whose labels fail is
refused as a whole, and the one before it stays in force.
"""
import logging
import threading
from typing import Callable, Dict, List, Optional

import grpc

from imgcls.clients.status import ServingError, invalid_argument
from imgcls.dev_server.config_files import ModelConfig
from imgcls.dev_server.versions import AVAILABLE, ModelVersions

_log = logging.getLogger(__name__)


class ModelRegistry:
  """Every model the server knows, by name.

  Args:
    loader_for: gives, for a model name, the function that loads one of its
      versions (path, version) into a servable.
    allow_unavailable_labels: --allow_version_labels_for_unavailable_models.
  """

  def __init__(self, loader_for: Callable[[str], Callable],
               allow_unavailable_labels: bool = False):
    self._loader_for = loader_for
    self._allow_unavailable_labels = allow_unavailable_labels
    self._lock = threading.Lock()
    self._models: Dict[str, ModelVersions] = {}
    self._labels: Dict[str, Dict[str, int]] = {}
    self._configs: List[ModelConfig] = []

  def apply(self, configs: List[ModelConfig]) -> None:
    """Serves `configs` from the next poll on.

    Raises:
      ServingError: FAILED_PRECONDITION for a label TF Serving would refuse;
        nothing changes then.
    """
    if configs == self._configs:
      return
    labels = {c.name: self._checked_labels(c) for c in configs}
    with self._lock:
      for config in configs:
        if config.name not in self._models:
          self._models[config.name] = ModelVersions(
              config.name, config.base_path, self._loader_for(config.name),
              config.policy)
        self._models[config.name].reconfigure(config.base_path, config.policy)
      for name in set(self._models) - {c.name for c in configs}:
        self._models[name].reconfigure('', None)
      self._labels = labels
      self._configs = list(configs)

  def _checked_labels(self, config: ModelConfig) -> Dict[str, int]:
    versions = self.versions(config.name)
    states = versions.states() if versions else {}
    current = self._labels.get(config.name, {})
    for label, version in config.version_labels:
      allowed = self._allow_unavailable_labels and current.get(
          label, version) == version
      state = states.get(version)
      if not allowed and (state is None or state.state != AVAILABLE):
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'Request to assign label to version {version} of model '
            f'{config.name}, which is not currently available for inference')
    return dict(config.version_labels)

  def poll(self) -> None:
    """Brings every model's versions in step with its base path."""
    with self._lock:
      models = list(self._models.items())
    for name, versions in models:
      try:
        versions.poll()
      except Exception:  # keep the others
        _log.exception('Polling the versions of model %s failed', name)

  def configs(self) -> List[ModelConfig]:
    with self._lock:
      return list(self._configs)

  def versions(self, name: str) -> Optional[ModelVersions]:
    with self._lock:
      return self._models.get(name)

  def version_for_label(self, name: str, label: str) -> int:
    """GetModelVersionForLabel."""
    with self._lock:
      version = self._labels.get(name, {}).get(label)
    if version is None:
      raise invalid_argument(f'Unrecognized servable version label: {label}')
    return version
