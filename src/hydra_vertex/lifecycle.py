"""What ``hydra-vertex status``, ``cancel`` and ``open`` do, through the official clients, against
Vertex AI or the emulator alike (:mod:`hydra_vertex.jobref` chooses which, and which job).

- :func:`job_status`: one job as plain data (state, trials done/failed/running, best so far,
  elapsed; a pipeline run's tasks and the jobs it created);
- :func:`cancel`: request the cancel, wait for the end state, say what was stopped;
- :func:`console_url`: the emulator's console page of a job, or Google Cloud console's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from hydra_vertex.jobref import CUSTOM, PIPELINE, TUNING, Clients, Found, Target, listed

TERMINAL = frozenset(
    {
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "PIPELINE_STATE_SUCCEEDED",
        "PIPELINE_STATE_FAILED",
        "PIPELINE_STATE_CANCELLED",
    }
)
RUNNING_TRIAL = ("ACTIVE", "REQUESTED", "STOPPING")


def state_of(job: Any) -> str:
    state = job.state
    return str(getattr(state, "name", state))


def short_state(state: str) -> str:
    """``JOB_STATE_RUNNING`` -> ``running``."""
    return state.removeprefix("JOB_STATE_").removeprefix("PIPELINE_STATE_").lower()


def _iso(stamp: Any) -> str | None:
    if not stamp:
        return None
    return str(stamp.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))


def elapsed_seconds(job: Any, now: datetime | None = None) -> float | None:
    """From the start (else the creation) to the end, or to now while it runs."""
    start = job.start_time or job.create_time
    if not start:
        return None
    end = job.end_time or (now or datetime.now(UTC))
    return max(0.0, (end - start).total_seconds())


@dataclass
class TrialRow:
    id: str
    state: str
    value: float | None
    parameters: dict[str, Any]
    reason: str = ""
    elapsed_seconds: float | None = None


@dataclass
class TaskRow:
    name: str
    state: str
    start_time: str | None
    end_time: str | None
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobStatus:
    """One job as ``status`` shows it (``--format json`` prints :meth:`to_dict`)."""

    kind: str  # tuning | custom | pipeline
    name: str
    id: str
    display_name: str
    state: str
    create_time: str | None
    start_time: str | None
    end_time: str | None
    elapsed_seconds: float | None
    error: str = ""
    metric: str = ""
    direction: str = ""
    max_trials: int = 0
    trials_done: int = 0
    trials_failed: int = 0
    trials_running: int = 0
    best_trial_id: str | None = None
    best_value: float | None = None
    best_parameters: dict[str, Any] = field(default_factory=dict)
    trials: list[TrialRow] = field(default_factory=list)
    tasks: list[TaskRow] = field(default_factory=list)
    created_jobs: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state not in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def job_status(found: Found, *, detail: bool = False, now: datetime | None = None) -> JobStatus:
    job = found.job
    kind = {TUNING: "tuning", CUSTOM: "custom", PIPELINE: "pipeline"}[found.kind]
    status = JobStatus(
        kind=kind,
        name=found.name,
        id=found.id,
        display_name=found.title,
        state=state_of(job),
        create_time=_iso(job.create_time),
        start_time=_iso(job.start_time),
        end_time=_iso(job.end_time),
        elapsed_seconds=elapsed_seconds(job, now),
        error=str(job.error.message) if job.error and job.error.message else "",
    )
    if found.kind is TUNING:
        _tuning(status, job, detail, now)
    elif found.kind is PIPELINE:
        status.tasks = tasks(job)
        status.created_jobs = _named_outputs(job)
    return status


def _tuning(status: JobStatus, job: Any, detail: bool, now: datetime | None) -> None:
    from hydra_vertex._study_spec import goal_direction
    from hydra_vertex.progress import best_of
    from hydra_vertex.trials import short_reason, trial_results

    metric = job.study_spec.metrics[0] if job.study_spec.metrics else None
    results = trial_results(job) if metric is not None else []
    status.metric = metric.metric_id if metric is not None else ""
    status.direction = goal_direction(metric) if metric is not None else ""
    status.max_trials = int(job.max_trial_count)
    status.trials_done = sum(t.state == "SUCCEEDED" for t in results)
    status.trials_failed = sum(t.state == "INFEASIBLE" for t in results)
    status.trials_running = sum(t.state in RUNNING_TRIAL for t in results)
    best = best_of(results, status.direction == "minimize")
    if best is not None:
        status.best_trial_id, status.best_value = best.id, best.value
        status.best_parameters = dict(best.parameters)
    if detail:
        times = {t.id: t for t in job.trials}
        status.trials = [
            TrialRow(
                t.id,
                t.state,
                t.value,
                dict(t.parameters),
                short_reason(t.infeasible_reason),
                elapsed_seconds(times[t.id], now) if t.id in times else None,
            )
            for t in results
        ]


def run_json(job: Any) -> dict[str, Any]:
    """A ``PipelineJob`` as proto-JSON (camelCase), the form :mod:`pipeline_dag` reads."""
    import json

    from google.cloud.aiplatform_v1.types import PipelineJob

    data: dict[str, Any] = json.loads(PipelineJob.to_json(job, use_integers_for_enums=False))
    return data


def tasks(job: Any) -> list[TaskRow]:
    """A pipeline run's tasks in DAG order (:func:`pipeline_dag.ordered_tasks`)."""
    from hydra_vertex.pipeline_dag import ordered_tasks, outputs

    return [
        TaskRow(
            ("  " * depth) + str(t.get("taskName", "")),
            str(t.get("state", "")),
            t.get("startTime"),
            t.get("endTime"),
            outputs(t),
        )
        for depth, t in ordered_tasks(run_json(job))
    ]


def _named_outputs(job: Any) -> list[str]:
    """The tuning and custom jobs a pipeline run's outputs name (once its tasks have ended)."""
    from hydra_vertex.pipeline_dag import created_jobs as named

    return named(run_json(job))


def created_jobs(c: Clients, t: Target, run: Found) -> list[Found]:
    """The tuning and retrain jobs a pipeline run created: those its outputs name, else (while
    they are not known yet) the app's ``<name>-tuning`` and ``<name>-retrain`` jobs created
    while it ran."""
    from hydra_vertex.jobref import get

    found = [f for name in _named_outputs(run.job) if (f := _get_job(c, name, get)) is not None]
    if found:
        return found
    values = run.job.runtime_config.parameter_values if run.job.runtime_config else {}
    app = values.get("app_name") if values else None
    if not app:
        return []
    start, end = run.job.create_time, run.job.end_time
    out: list[Found] = []
    for kind, suffix in ((TUNING, "tuning"), (CUSTOM, "retrain")):
        for f in listed(c, t, kind, f"{app}-{suffix}"):
            created = f.job.create_time
            if created and start and created >= start and (not end or created <= end):
                out.append(f)
    return out


def _get_job(c: Clients, name: str, get: Callable[..., Found | None]) -> Found | None:
    kind = TUNING if "/hyperparameterTuningJobs/" in name else CUSTOM
    return get(c, kind, name)


# -- cancel --------------------------------------------------------------------------------------


@dataclass
class Cancelled:
    """What ``cancel`` did: the job as it ended, the trials or tasks it stopped, the jobs a
    pipeline run had created (as they ended)."""

    job: Found
    stopped: list[str]
    created: list[Found] = field(default_factory=list)
    timed_out: bool = False


def cancel(
    c: Clients,
    t: Target,
    found: Found,
    *,
    timeout: float,
    poll: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Cancelled:
    """Cancel ``found`` and wait (up to ``timeout`` seconds) until it is CANCELLED (or another
    end state); a job already ended is a :class:`UsageError`."""
    from hydra_vertex.errors import UsageError

    state = state_of(found.job)
    if state in TERMINAL:
        raise UsageError(
            f"{found.kind.label} {found.title} ({found.name}) already ended "
            f"{short_state(state).upper()}: nothing to cancel"
        )
    before = _live_parts(found)
    found.kind.call(c, "cancel", name=found.name)
    interval = poll if poll is not None else (0.5 if t.is_emulator else 5.0)
    deadline = clock() + timeout
    current = found
    while state_of(current.job) not in TERMINAL:
        if clock() > deadline:
            return Cancelled(current, before, timed_out=True)
        time.sleep(interval)
        current = current.reload(c)
    created: list[Found] = []
    if found.kind is PIPELINE:
        created = _wait_ended(c, created_jobs(c, t, current), deadline, interval, clock)
    return Cancelled(current, before, created)


def _live_parts(found: Found) -> list[str]:
    """The running trials (a tuning job) or tasks (a pipeline run) of a job, as labels."""
    job = found.job
    if found.kind is TUNING:
        return [
            f"trial {t.id}" for t in job.trials if getattr(t.state, "name", "") in RUNNING_TRIAL
        ]
    if found.kind is PIPELINE:
        return [f"task {t.name}" for t in tasks(job) if t.state in ("RUNNING", "PENDING")]
    return []


def _wait_ended(
    c: Clients, jobs: list[Found], deadline: float, interval: float, clock: Callable[[], float]
) -> list[Found]:
    out = []
    for f in jobs:
        while state_of(f.job) not in TERMINAL and clock() < deadline:
            time.sleep(interval)
            f = f.reload(c)
        out.append(f)
    return out


# -- console links -------------------------------------------------------------------------------

GOOGLE_CONSOLE = "https://console.cloud.google.com"


def console_url(t: Target, found: Found | None = None) -> str:
    """The page of ``found`` (or the job list): the emulator's console, with its read-only
    console token in the query as its own links carry it (never the API token), or Google
    Cloud console's (as the aiplatform SDK composes them)."""
    if t.is_emulator:
        base = str(t.endpoint.api_endpoint).rstrip("/")
        path = "/" if found is None else f"/console/{found.kind.collection}/{quote(found.id)}"
        token = t.console_token
        if token is None:  # never the API token (t.endpoint.token): a link gets shared
            from hydra_vertex.local_details import console_token

            token = console_token(base, t.endpoint.token)
        query = f"?{urlencode({'token': token})}" if token else ""
        return f"{base}{path}{query}"
    if found is None:
        return f"{GOOGLE_CONSOLE}/vertex-ai/training/hyperparameter-tuning-jobs?project={t.project}"
    parts = found.name.split("/")
    project, location = parts[1], parts[3]
    if found.kind is PIPELINE:
        return (
            f"{GOOGLE_CONSOLE}/vertex-ai/locations/{location}/pipelines/runs/{found.id}"
            f"?project={project}"
        )
    return (
        f"{GOOGLE_CONSOLE}/vertex-ai/locations/{location}/training/{found.id}?project={project}"
    )
