"""A pipeline job followed through the Vertex AI API (the local emulator or Vertex AI itself), with
the v1 GAPIC ``PipelineServiceClient``: created from the template's run request, polled at the
endpoint's pace (:mod:`hydra_vertex.polling`), read through its task details (the jobs its tasks
launched, the deciding line of a failed task, the run's outputs), cancelled and waited for.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from hydra_vertex import gcp_resources, retries
from hydra_vertex.polling import Pace

__all__ = [
    "TERMINAL",
    "cancel",
    "create",
    "failure",
    "follow",
    "launched",
    "outputs",
    "state",
    "task_states",
]

TERMINAL = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")
_COMPONENT = "system.ContainerExecution"


def state(job: Any) -> str:
    return str(getattr(job.state, "name", job.state))


def create(client: Any, parent: str, body: Mapping[str, Any], job_id: str = "") -> Any:
    """Create the pipeline job ``body`` (proto-JSON, as
    :meth:`~hydra_vertex.pipelines.job_request.JobRequest.pipeline_job` makes it), named
    ``job_id`` if given. Not retried: a create is not idempotent."""
    from google.cloud.aiplatform_v1 import types

    job = types.PipelineJob.from_json(json.dumps(body))
    return client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id=job_id)


def get(client: Any, name: str) -> Any:
    return retries.call(lambda: client.get_pipeline_job(name=name), f"get {name}")


def follow(
    client: Any,
    name: str,
    *,
    pace: Pace,
    on_poll: Callable[[Any], Hashable] | None = None,
) -> Any:
    """Poll the pipeline job until it ends; returns it. ``on_poll(job)`` sees every poll and
    returns what counts as progress (the polls quicken when it changes; default: the task
    states)."""
    seen: Hashable = None
    while True:
        job = get(client, name)
        mark = on_poll(job) if on_poll is not None else task_states(job)
        if state(job) in TERMINAL:
            return job
        time.sleep(pace.after(mark != seen))
        seen = mark


def cancel(client: Any, name: str, *, pace: Pace, timeout: float) -> Any:
    """Ask to cancel the job, then wait (at most ``timeout`` seconds) until it has ended;
    returns the job as last read."""
    from google.api_core import exceptions as gexc

    with contextlib.suppress(gexc.FailedPrecondition):  # already ended
        retries.call(lambda: client.cancel_pipeline_job(name=name), f"cancel {name}", attempts=3)
    deadline = time.monotonic() + timeout
    while True:
        job = get(client, name)
        if state(job) in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(pace.after(False))


def task_states(job: Any) -> tuple[tuple[str, str], ...]:
    """``(task name, state)`` of every task: what changes as the run goes on."""
    return tuple(
        (str(t.task_name), str(getattr(t.state, "name", t.state)))
        for t in job.job_detail.task_details
    )


def _task(job: Any, name: str) -> Any | None:
    for t in job.job_detail.task_details:
        if t.task_name == name and t.parent_task_id:
            return t
    return None


def _metadata(task: Any) -> Mapping[str, Any]:
    return task.execution.metadata if task is not None and task.execution else {}


def outputs(job: Any) -> dict[str, Any]:
    """The run's outputs (the root task's ``output:*`` metadata): empty until it succeeded."""
    for t in job.job_detail.task_details:
        if not t.parent_task_id:
            return {
                k.removeprefix("output:"): v
                for k, v in _metadata(t).items()
                if k.startswith("output:")
            }
    return {}


def launched(job: Any, task_name: str, resource_type: str) -> str | None:
    """The ``resource_type`` job (``HyperparameterTuningJob``, ``CustomJob``) that the task
    ``task_name`` launched, from its ``gcp_resources`` output: known while the task runs and
    after it failed, not only once it succeeded."""
    text = _metadata(_task(job, task_name)).get("output:gcp_resources")
    found = gcp_resources.names(text, resource_type) if isinstance(text, str) else []
    return found[0] if found else None


def running_task(job: Any) -> str | None:
    """The name of the component task running now (the last one started), if any."""
    running = [
        t
        for t in job.job_detail.task_details
        if t.parent_task_id
        and str(getattr(t.state, "name", t.state)) == "RUNNING"
        and t.execution.schema_title == _COMPONENT
    ]
    if not running:
        return None
    return str(max(running, key=lambda t: t.start_time.timestamp()).task_name)


def failure(job: Any) -> str | None:
    """Why a run failed: the error message of the component task that failed first (its
    deciding line first), else the job's own error; None when nothing failed."""
    failed = [
        t
        for t in job.job_detail.task_details
        if str(getattr(t.state, "name", t.state)) == "FAILED"
        and t.execution.schema_title == _COMPONENT
        and t.error.message
    ]
    if failed:
        first = min(failed, key=lambda t: t.end_time.timestamp() if t.end_time else 0.0)
        return str(first.error.message)
    return str(job.error.message) if job.error.message else None


def local_log(state_dir: Path, job_name: str) -> Path:
    """Where the emulator with ``state_dir`` keeps a pipeline job's combined log."""
    return state_dir / "runs" / job_name.rsplit("/", 1)[-1] / "pipeline.log"
