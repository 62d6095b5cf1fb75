"""The ``retrain`` step: a custom job that runs the app with the winning overrides.

The command is ``hydra-vertex-shim --retrain -- <app command> <best overrides> <retrain
overrides>``, plus, when the job has W&B settings, the callback that applies hydra-vertex's W&B
rules (as the shim adds it for trials). A
retrain override for a key the tuning also set wins (the tuned one is dropped), so
``trainer.max_iter=100`` after tuning ``trainer.max_iter`` trains 100 iterations. The model goes
to ``AIP_MODEL_DIR``, which Vertex sets to ``<run dir>/retrain/model/``; that URI is the step's
output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra_vertex import jobs
from hydra_vertex.errors import TuningError
from hydra_vertex.machine import JobSettings, Machine, custom_job_spec, with_machine_type
from hydra_vertex.steps import common
from hydra_vertex.steps.tune import SHIM

# The Hydra callback that applies hydra-vertex's W&B rules in the app's process (see wandb_runs).
WANDB_CALLBACK = (
    "++hydra.callbacks.hydra_vertex_wandb._target_=hydra_vertex.wandb_runs.WandbEnvCallback"
)


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``: the key an override sets (Hydra's ``+``/``++``/``~`` dropped)."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def merge_overrides(best: Sequence[str], final: Sequence[str]) -> list[str]:
    """The winner's overrides, then the final-run ones; a final-run key replaces a tuned one."""
    final_keys = {override_key(o) for o in final}
    return [o for o in best if override_key(o) not in final_keys] + list(final)


def retrain_command(
    app_command: Sequence[str],
    best_overrides: Sequence[str],
    retrain_overrides: Sequence[str],
    wandb: Mapping[str, Any] | None,
) -> list[str]:
    """``hydra-vertex-shim --retrain -- <app> <best> <final>``; with W&B settings, the W&B
    callback too (as trials get it). The shim makes it one Hydra run (``hydra.mode=RUN``, also when
    the app's config selects MULTIRUN) and, under the emulator, puts Hydra's output directory
    under the job's run directory."""
    command = [
        SHIM, "--retrain", "--", *app_command, *merge_overrides(best_overrides, retrain_overrides)
    ]
    if wandb:
        command.append(WANDB_CALLBACK)
    return command


def study_metric_env(location: str, tuning_job: str) -> dict[str, str]:
    """``HYDRA_VERTEX_METRIC=<the study's metric>`` for the retrain, read from the tuning job:
    the shim then records the retrain's final value under that tag (its metric file; see
    docs/report.md). Empty when there is no tuning job to read."""
    if not tuning_job:
        return {}
    from hydra_vertex import retries

    client = common.job_client(location)
    job = retries.call(
        lambda: client.get_hyperparameter_tuning_job(name=tuning_job), f"get {tuning_job}"
    )
    metrics = job.study_spec.metrics
    return {"HYDRA_VERTEX_METRIC": metrics[0].metric_id} if metrics else {}


def custom_job(
    *,
    display_name: str,
    image_uri: str,
    command: Sequence[str],
    machine: Machine,
    service_account: str,
    base_output_dir: str,
    env: Mapping[str, str],
    settings: JobSettings = JobSettings(),  # noqa: B008 (frozen)
) -> Any:
    from google.cloud.aiplatform_v1 import types

    spec = custom_job_spec(
        machine,
        settings,
        container=common.container(image_uri, command, env),
        base_output_dir=base_output_dir,
        service_account=service_account,
    )
    return types.CustomJob(display_name=display_name, job_spec=spec, **settings.job_fields())


def retrain(
    *,
    project: str,
    location: str,
    name: str,
    image_uri: str,
    app_command: Sequence[str],
    best_overrides: Sequence[str],
    retrain_overrides: Sequence[str] = (),
    machine_type: str = "n1-standard-4",
    service_account: str = "",
    staging_bucket: str,
    wandb: Mapping[str, Any] | None = None,
    tuning_job: str = "",
    launch_key: str,
    gcp_resources_path: str | None = None,
    poll_seconds: float | None = None,
    trial_machine: Mapping[str, Any] | None = None,
    retrain_machine: Mapping[str, Any] | None = None,
    job_settings: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """Run the final training; returns ``(model_dir URI, custom job name)``.

    The machine is ``retrain_machine`` (the retrain's whole machine) or, when that is empty,
    ``trial_machine``, over ``machine_type``.
    """
    which = "retrain_machine" if retrain_machine else "trial_machine"
    with common.parameter(which):
        machine = with_machine_type(retrain_machine or trial_machine, machine_type)
    with common.parameter("job_settings"):
        settings = JobSettings.from_dict(job_settings, region=location)
    base = f"{common.run_dir(staging_bucket, name, launch_key)}/retrain"
    command = retrain_command(app_command, best_overrides, retrain_overrides, wandb)
    job = custom_job(
        display_name=f"{name}-retrain",
        image_uri=image_uri,
        command=command,
        machine=machine,
        service_account=service_account,
        base_output_dir=base,
        settings=settings,
        env={
            **common.wandb_env(
                wandb or {}, "retrain", group=tuning_job.rsplit("/", 1)[-1], name=name
            ),
            **study_metric_env(location, tuning_job),
        },
    )
    common.log(f"retrain command: {' '.join(command)}")
    final = common.run_job(
        jobs.CUSTOM,
        job,
        project=project,
        location=location,
        key=f"{launch_key}/retrain",
        gcp_resources_path=gcp_resources_path,
        poll_seconds=poll_seconds,
    )
    job_name = str(final.name)
    state = jobs.state_name(final)
    if state != "JOB_STATE_SUCCEEDED":
        raise TuningError(
            f"retrain job {job_name} ended {state}: {final.error.message or 'no detail'}"
        )
    model_dir = f"{base}/model/"
    common.log(f"retrain job {job_name} SUCCEEDED; model in {model_dir}")
    return model_dir, job_name
