"""The ``launch_tuning`` step: a ``HyperparameterTuningJob`` whose trials start through the shim.

The trial container runs ``hydra-vertex-shim --search-space-json <space> -- <app command>``;
Vertex appends ``--param=value`` per trial and the shim turns them into typed Hydra overrides.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hydra_vertex import jobs
from hydra_vertex.errors import TuningError
from hydra_vertex.machine import JobSettings, Machine, custom_job_spec, with_machine_type
from hydra_vertex.search_space import SearchSpace, from_mapping
from hydra_vertex.steps import common
from hydra_vertex.tuning_options import TuningOptions

SEED_LABEL = "hydra-vertex-seed"
SHIM = "hydra-vertex-shim"


def load_space(search_space: Mapping[str, Any] | SearchSpace) -> SearchSpace:
    """The pipeline's ``search_space`` parameter (sweep grammar, as in the YAML file)."""
    if isinstance(search_space, SearchSpace):
        return search_space
    return from_mapping(dict(search_space), source="the search_space parameter")


def trial_command(space: SearchSpace, app_command: Sequence[str]) -> list[str]:
    return [
        SHIM,
        "--search-space-json",
        json.dumps(space.to_dict(), sort_keys=True),
        "--",
        *app_command,
    ]


def tuning_job(
    *,
    display_name: str,
    image_uri: str,
    app_command: Sequence[str],
    space: SearchSpace,
    max_trial_count: int,
    parallel_trial_count: int,
    max_failed_trial_count: int,
    machine: Machine,
    service_account: str,
    base_output_dir: str,
    env: Mapping[str, str],
    seed: int,
    trial_timeout_seconds: int,
    settings: JobSettings = JobSettings(),  # noqa: B008 (frozen)
    options: TuningOptions = TuningOptions(),  # noqa: B008 (frozen)
) -> Any:
    """The ``aiplatform_v1.HyperparameterTuningJob`` request (not yet created)."""
    from google.cloud.aiplatform_v1 import types

    if not app_command:
        raise TuningError("app_command is empty: give the command that starts the app")
    space = options.apply(space)
    trial_spec = custom_job_spec(
        machine,
        settings,
        container=common.container(image_uri, trial_command(space, app_command), env),
        base_output_dir=base_output_dir,
        service_account=service_account,
        timeout_seconds=trial_timeout_seconds,
    )
    labels = {SEED_LABEL: str(seed)} if seed >= 0 else {}
    return types.HyperparameterTuningJob(
        display_name=display_name,
        study_spec=options.study_spec(space),
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        trial_job_spec=trial_spec,
        **settings.job_fields(labels),
    )


class _TrialLog:
    """One log line per trial that changes state, with the best value so far."""

    def __init__(self, space: SearchSpace, then: Callable[[Any], None] | None = None) -> None:
        self.space = space
        self.seen: dict[str, str] = {}
        self.then = then

    def __call__(self, job: Any) -> None:
        from hydra_vertex.trials import trial_results

        if self.then is not None:
            self.then(job)

        results = trial_results(job) if job.study_spec.metrics else []
        for r in results:
            if self.seen.get(r.id) == r.state:
                continue
            self.seen[r.id] = r.state
            value = "" if r.value is None else f" {self.space.metric}={r.value:.6g}"
            reason = f" ({r.infeasible_reason.splitlines()[0]})" if r.infeasible_reason else ""
            common.log(f"trial {r.id} {r.state}{value}{reason} {_params(r.parameters)}")


def _params(parameters: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in parameters.items())


def launch_tuning(
    *,
    project: str,
    location: str,
    name: str,
    image_uri: str,
    app_command: Sequence[str],
    search_space: Mapping[str, Any] | SearchSpace,
    max_trial_count: int,
    parallel_trial_count: int,
    max_failed_trial_count: int = 0,
    machine_type: str = "n1-standard-4",
    service_account: str = "",
    staging_bucket: str,
    wandb: Mapping[str, Any] | None = None,
    seed: int = -1,
    trial_timeout_seconds: int = 0,
    launch_key: str,
    gcp_resources_path: str | None = None,
    poll_seconds: float | None = None,
    trial_machine: Mapping[str, Any] | None = None,
    job_settings: Mapping[str, Any] | None = None,
    tuning_options: Mapping[str, Any] | None = None,
    on_poll: Callable[[Any], None] | None = None,
) -> str:
    """Create (once) and wait for the tuning job; returns its resource name.

    ``on_poll`` receives the job each time it is read (a progress display, say).

    ``trial_machine`` (:class:`~hydra_vertex.machine.Machine` settings over ``machine_type``),
    ``job_settings`` (:class:`~hydra_vertex.machine.JobSettings`) and ``tuning_options``
    (:class:`~hydra_vertex.tuning_options.TuningOptions`) are the template's dict parameters.
    Raises :class:`TuningError` when the job ends FAILED or CANCELLED.
    """
    with common.parameter("trial_machine"):
        machine = with_machine_type(trial_machine, machine_type)
    with common.parameter("job_settings"):
        settings = JobSettings.from_dict(job_settings, region=location)
    with common.parameter("tuning_options"):
        options = TuningOptions.from_dict(tuning_options)
        space = options.apply(load_space(search_space))
    job = tuning_job(
        display_name=f"{name}-tuning",
        image_uri=image_uri,
        app_command=app_command,
        space=space,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        machine=machine,
        service_account=service_account,
        base_output_dir=f"{common.run_dir(staging_bucket, name, launch_key)}/tuning",
        env=common.wandb_env(wandb or {}, "trial"),
        seed=seed,
        trial_timeout_seconds=trial_timeout_seconds,
        settings=settings,
        options=options,
    )
    final = common.run_job(
        jobs.TUNING,
        job,
        project=project,
        location=location,
        key=f"{launch_key}/launch-tuning",
        gcp_resources_path=gcp_resources_path,
        poll_seconds=poll_seconds,
        on_poll=_TrialLog(space, on_poll),
    )
    job_name = str(final.name)
    state = jobs.state_name(final)
    if state != "JOB_STATE_SUCCEEDED":
        from hydra_vertex.trials import no_success_message, trial_results

        results = trial_results(final)
        if not any(r.state == "SUCCEEDED" for r in results):
            raise TuningError(no_success_message(results, f"tuning job {job_name} ({state})"))
        raise TuningError(
            f"tuning job {job_name} ended {state}: {final.error.message or 'no detail'}"
        )
    common.log(f"tuning job {job_name} SUCCEEDED with {len(final.trials)} trials")
    return job_name
