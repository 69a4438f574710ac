"""Retraining on Kubeflow Pipelines: submit a run, then follow it on later
ticks.

A CronJob tick must not block for the hours a run takes, so a tick submits a
run and records it as `submitted` with its run ID; later ticks read its state
through KFP's API (backend/api/v2beta1/run.proto, RuntimeState) and record how
it ended:

- SUCCEEDED: `pushed`, with the version that the run's Pusher published, found
  in the serving directory by the provenance the Pusher writes into each
  version: its model URI lies under `<root>/<pipeline>/<run ID>/`, the
  layout KFP's driver gives every output (backend/src/v2/driver/driver.go,
  provisionOutputs; v2/metadata/client.go, GetPipeline). A run that succeeded
  and published nothing was `not_blessed`.
- FAILED at the data gate: `refused`, as a local run records it; the data
  needs a person, not another try.
- FAILED, CANCELED (or any other end): `failed`, retried through KFP's own
  retry of the run (the failed steps run again), or as a new run when KFP
  refuses that.
- still active after `timeout_s`: stopped, and `timed_out`; the next try is a
  new run. A stop that KFP refuses (HTTP 400 "Row not found": the run is
  already CANCELING or over) or cannot finish (its workflow is gone) counts
  the run as over all the same, and the attempt says so.

No run is submitted while one of the pipeline is still active, whoever
started it: two runs would mean two Pushers. A run without a state, or
CANCELING, waits on its workflow's word, which never comes once the workflow
is gone (kubeflow.RunStatus.active_at): past `timeout_s` after its creation
it no longer holds back a submission, and the submitted attempt names it.
"""
import dataclasses
import datetime
import json
import logging
import os
from typing import List, Optional

from imgcls.contract import names
from imgcls.contract.errors import UserError
from imgcls.pipeline import kubeflow
from imgcls.pipeline.config import PipelineConfig
from imgcls.pipeline.kubeflow_config import KubeflowOptions
from imgcls.retrain import state as state_lib
from imgcls.retrain.state import Attempt, Outcome
from imgcls.serving_dir import versions as model_versions

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class KfpTarget:
  # KFP's API; None: its in-cluster address when there are credentials
  # (kubeflow.KfpAuth.default_host).
  host: Optional[str]
  options: KubeflowOptions = KubeflowOptions()
  # The user's (profile) namespace, where the runs live; never where KFP runs.
  namespace: Optional[str] = None
  # A literal token, or a file re-read on every request (a projected
  # ServiceAccount token the kubelet renews); neither: KFP's convention,
  # $KF_PIPELINES_SA_TOKEN_PATH (kubeflow.kfp_auth).
  token: Optional[str] = None
  token_file: Optional[str] = None
  experiment: str = 'imgcls'
  # A run still active this long after its submission is stopped; a run of
  # anyone's without a state, or CANCELING, this long after its creation no
  # longer holds back a submission.
  timeout_s: float = 24 * 3600

  def api(self) -> kubeflow.KfpApi:
    return kubeflow.KfpApi(self.host, self.token, self.namespace,
                           token_file=self.token_file)


def follow(target: KfpTarget, config: PipelineConfig,
           attempt: Attempt) -> Attempt:
  """The attempt with the state of its run: still `submitted` while the run
  is active, else how it ended."""
  api = target.api()
  status = api.run_status(attempt.kfp_run_id)
  if status.active:
    if _age_s(attempt.submitted) > target.timeout_s:
      return _ended(attempt, Outcome.TIMED_OUT,
                    f'KFP run {status.run_id} was still {status.state} '
                    f'{target.timeout_s / 3600:g} h after its submission; '
                    f'{_stop(api, status.run_id)}')
    return attempt
  if names.DATA_GATE_NODE in status.failed_tasks:
    return _ended(attempt, Outcome.REFUSED,
                  f'KFP run {status.run_id}: the data validation gate refused '
                  'the data; its anomalies are in the run\'s DataValidator '
                  'output (--accept-anomalies, or an edited schema, lets it '
                  'through)')
  if status.state != kubeflow.SUCCEEDED:
    return _ended(attempt, Outcome.FAILED,
                  f'KFP run {status.run_id} {status.state}'
                  f'{": " + status.error if status.error else ""}')
  version = version_of_run(config.model_base_path, status.run_id)
  if version is None:
    return _ended(attempt, Outcome.NOT_BLESSED,
                  f'KFP run {status.run_id} succeeded and published no '
                  'version: the Evaluator or the contract check did not '
                  'bless the model (their reasons are in the run\'s '
                  'GatedEvaluator and ContractCheck outputs)')
  attempt = _ended(attempt, Outcome.PUSHED, f'KFP run {status.run_id}')
  attempt.version = str(version)
  return attempt


def start(target: KfpTarget, config: PipelineConfig, attempt: Attempt,
          previous: Optional[Attempt]) -> Attempt:
  """Retries the previous run of this data when it failed, else submits a
  new one; or, while a run of the pipeline is active, does neither and
  returns the previous attempt (or this one), not `submitted`, saying why."""
  api = target.api()
  runs = api.runs(config.pipeline_name)
  now = datetime.datetime.now(datetime.timezone.utc)
  active = [r for r in runs if r.active_at(now, target.timeout_s)]
  if active:
    return dataclasses.replace(
        previous or attempt,
        detail=f'KFP run {active[0].run_id} of {config.pipeline_name} is '
        f'still {active[0].state}; nothing new submitted')
  # Runs that look active but are past their age limit.
  passed_over = [r for r in runs if r.active]
  run_id = _retried(api, previous) or kubeflow.submit_pipeline(
      config, api.host, target.options, api=api,
      experiment=target.experiment)
  return dataclasses.replace(
      attempt, outcome=Outcome.SUBMITTED, kfp_run_id=run_id,
      submitted=state_lib.now(),
      detail=f'KFP run {run_id}' + _passed_over(passed_over, target.timeout_s))


def _stop(api: kubeflow.KfpApi, run_id: str) -> str:
  """Asks KFP to stop the run; says how that went. A refusal is not an
  error: the run is over as far as retraining goes."""
  try:
    api.terminate(run_id)
  except UserError as e:
    _log.warning('KFP did not stop run %s: %s', run_id, e)
    return f'KFP did not stop it ({e}); counted as over'
  return 'stopped'


def _passed_over(runs: List[kubeflow.RunStatus], age_limit_s: float) -> str:
  """Why runs that still look active did not hold this submission back."""
  if not runs:
    return ''
  return (f'; passed over {len(runs)} run(s) still {runs[0].state} '
          f'{age_limit_s / 3600:g} h after their creation, whose workflow '
          f'KFP no longer reports (newest: {runs[0].run_id})')


def _retried(api: kubeflow.KfpApi,
             previous: Optional[Attempt]) -> Optional[str]:
  """The run ID, when KFP retries the previous attempt's failed run."""
  if not (previous and previous.kfp_run_id and
          previous.outcome == Outcome.FAILED):
    return None
  try:
    api.retry(previous.kfp_run_id)
  except UserError as e:
    _log.warning('KFP did not retry run %s (%s); submitting a new run',
                 previous.kfp_run_id, e)
    return None
  return previous.kfp_run_id


def version_of_run(model_base_path: str, run_id: str) -> Optional[int]:
  """The version published from run_id's model, if there is one."""
  for version in reversed(model_versions.versions(model_base_path)):
    if f'/{run_id}/' in _model_uri(os.path.join(model_base_path,
                                                str(version))):
      return version
  return None


def _model_uri(version_dir: str) -> str:
  """The model URI in the version's provenance (names.PROVENANCE_FILE)."""
  try:
    with open(os.path.join(version_dir, names.PROVENANCE_FILE)) as f:
      return str(json.load(f).get('model_uri', ''))
  except (OSError, ValueError, AttributeError):
    return ''


def _ended(attempt: Attempt, outcome: Outcome, detail: str) -> Attempt:
  return dataclasses.replace(attempt, outcome=outcome, detail=detail)


def _age_s(iso_time: str) -> float:
  if not iso_time:
    return 0.0
  return (datetime.datetime.now(datetime.timezone.utc) -
          datetime.datetime.fromisoformat(iso_time)).total_seconds()
