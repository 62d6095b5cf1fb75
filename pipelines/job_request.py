"""One run of the tune-and-retrain template for a job file: its parameter values, display name,
pipeline root and labels.

``hydra-vertex submit`` (an ``aiplatform.PipelineJob`` on Vertex AI) and ``hydra-vertex run
--local`` (a ``PipelineJob`` created on the local emulator) both build their run from here, so the
job file means the same thing to both; they differ only in ``app_source`` (a ``gs://`` tarball that
Cloud Build builds, or the local image already built). No kfp import: the CLI reads this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from hydra_vertex.jobfile import JobSpec

__all__ = ["PIPELINE_NAME", "TEMPLATE", "JobRequest", "parameters", "request"]

PIPELINE_NAME = "hydra-vertex-tune-and-retrain"
TEMPLATE = Path(__file__).with_name("tune_and_retrain.json")
APP_LABEL = "hydra-vertex-app"


def parameters(spec: JobSpec, space_data: Any, app_source: str | None = None) -> dict[str, Any]:
    """The template's parameter values for a job file; ``app_source`` replaces the job file's
    source directory (the uploaded tarball, or the local image built before the run)."""
    return {
        "app_name": spec.name,
        "app_source": app_source if app_source is not None else str(spec.source),
        "app_command": list(spec.command),
        "search_space": space_data,
        "project": spec.vertex.project,
        "location": spec.vertex.region,
        "staging_bucket": spec.vertex.staging_bucket,
        "max_trial_count": spec.tuning.max_trials,
        "parallel_trial_count": spec.tuning.parallel_trials,
        "max_failed_trial_count": spec.tuning.max_failed_trials,
        "machine_type": spec.vertex.machine_type,
        "service_account": spec.vertex.service_account or "",
        "retrain_overrides": list(spec.retrain_overrides),
        "wandb": dict(spec.wandb),
        "seed": -1 if spec.tuning.seed is None else spec.tuning.seed,
        "trial_timeout_seconds": spec.tuning.timeout_seconds or 0,
        "trial_machine": spec.vertex.machine.to_dict(),
        "retrain_machine": spec.retrain_machine.to_dict() if spec.retrain_vertex else {},
        "job_settings": spec.vertex.job.to_dict(),
        "tuning_options": spec.tuning.options.to_dict(),
    }


@dataclass(frozen=True)
class JobRequest:
    """What a ``PipelineJob`` of the template is created with."""

    display_name: str
    pipeline_root: str
    parameter_values: dict[str, Any]
    labels: dict[str, str]
    service_account: str
    encryption_key: str | None

    def pipeline_job(self, template: Path = TEMPLATE) -> dict[str, Any]:
        """The ``PipelineJob`` as proto-JSON (what ``aiplatform.PipelineJob.submit()`` sends):
        the compiled ``template`` with this run's runtime config."""
        body: dict[str, Any] = {
            "displayName": self.display_name,
            "pipelineSpec": json.loads(template.read_text(encoding="utf-8")),
            "runtimeConfig": {
                "gcsOutputDirectory": self.pipeline_root,
                "parameterValues": self.parameter_values,
            },
            "labels": self.labels,
        }
        if self.service_account:
            body["serviceAccount"] = self.service_account
        if self.encryption_key:
            body["encryptionSpec"] = {"kmsKeyName": self.encryption_key}
        return body


def request(spec: JobSpec, space_data: Any, app_source: str) -> JobRequest:
    """The run of the template for ``spec`` with the app's source at ``app_source``."""
    return JobRequest(
        display_name=f"{spec.name}-{PIPELINE_NAME.removeprefix('hydra-vertex-')}",
        pipeline_root=f"{spec.vertex.staging_bucket.rstrip('/')}/pipeline-root",
        parameter_values=parameters(spec, space_data, app_source),
        labels={APP_LABEL: spec.name, **spec.vertex.job.labels},
        service_account=spec.vertex.service_account or "",
        encryption_key=spec.vertex.job.encryption_key,
    )
