"""Small pieces the steps share: where outputs go, W&B variables, logging, the job client."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hydra_vertex.errors import SettingError, UsageError

_WANDB_VARS = {
    "project": "WANDB_PROJECT",
    "entity": "WANDB_ENTITY",
    "mode": "WANDB_MODE",
    "watch": "WANDB_WATCH",
}


def log(message: str) -> None:
    print(f"[hydra-vertex] {message}", flush=True)


def parent(project: str, location: str) -> str:
    return f"projects/{project}/locations/{location}"


def run_dir(staging_bucket: str, name: str, launch_key: str) -> str:
    """``<staging_bucket>/<name>/<run>``: where one pipeline run's jobs write (gs://)."""
    from hydra_vertex.jobs import idempotency_value

    if not staging_bucket.startswith("gs://"):
        raise UsageError(f"staging_bucket must be a gs:// URI, got {staging_bucket!r}")
    return f"{staging_bucket.rstrip('/')}/{name}/{idempotency_value(launch_key)[:16]}"


def wandb_env(
    settings: Mapping[str, Any], role: str, group: str = "", name: str = ""
) -> dict[str, str]:
    """W&B variables for ``role`` ``trial`` or ``retrain`` from the job file's ``wandb`` section.

    The job file's tags go to ``WANDB_TAGS`` (a trial's reporting callback adds one tag per
    parameter). Trials upload no model (``WANDB_LOG_MODEL=false``); the retrain logs it at the end
    unless the job file says otherwise, and is named ``<name>-retrain`` in the tuning job's group.
    The run directory, offline mode without an API key and ``WANDB_DISABLED`` are settled inside
    the job's process (:mod:`hydra_vertex.wandb_runs`), where the key and the paths are known.
    """
    env = {var: str(settings[key]) for key, var in _WANDB_VARS.items() if settings.get(key)}
    tags = settings.get("tags")
    if isinstance(tags, str):
        tags = [tags]
    if tags:
        # W&B splits WANDB_TAGS on commas.
        env["WANDB_TAGS"] = ",".join(str(t).replace(",", ";").strip() for t in tags)
    if role == "trial":
        env["WANDB_LOG_MODEL"] = "false"
    else:
        log_model = settings.get("log_model", "end")
        env["WANDB_LOG_MODEL"] = str(log_model).lower() if log_model is not None else "end"
        env["WANDB_JOB_TYPE"] = "retrain"
        if name:
            env["WANDB_NAME"] = f"{name}-retrain"
        if group:
            env["WANDB_RUN_GROUP"] = group
    return env


def env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def container(image_uri: str, command: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """The ``ContainerSpec`` of the trials or the retrain (every worker pool runs the same)."""
    return {"image_uri": image_uri, "command": list(command), "args": [], "env": env_list(env)}


@contextlib.contextmanager
def parameter(name: str) -> Iterator[None]:
    """A :class:`SettingError` raised inside names the step's parameter ``name``."""
    try:
        yield
    except SettingError as e:
        raise e.located(f"the {name} parameter") from None


def job_client(location: str) -> Any:
    from hydra_vertex.vertex import job_client as make

    return make(location)


def run_job(
    kind: Any,
    job: Any,
    *,
    project: str,
    location: str,
    key: str,
    gcp_resources_path: str | None,
    poll_seconds: float | None = None,
    on_poll: Any = None,
) -> Any:
    """:func:`hydra_vertex.jobs.run_once` for a step: create ``job`` once per ``key``, wait for it
    (cancel on SIGTERM); returns the finished job. ``poll_seconds`` fixes the poll interval
    (default: :func:`hydra_vertex.polling.for_endpoint`, adaptive against the emulator)."""
    from hydra_vertex import jobs
    from hydra_vertex.polling import for_endpoint
    from hydra_vertex.vertex import api_base

    return jobs.run_once(
        job_client(location),
        kind,
        parent(project, location),
        job,
        key=key,
        gcp_resources_path=gcp_resources_path,
        api_base=api_base(location),
        pace=for_endpoint(poll_seconds),
        log=log,
        on_poll=on_poll,
    )
