"""Create-once, wait and cancel for Vertex jobs (tuning and custom), through the v1 GAPIC client.

Creating a job is not idempotent, and a pipeline task can be restarted after it created one. So a
launcher first looks for the job it created: the ``gcp_resources`` file it wrote (as the
google-cloud-pipeline-components launchers do), then a job carrying its idempotency label (a hash
of the pipeline run and task, stable across restarts). Only if neither exists does it create one.

Waiting polls ``get`` through :mod:`hydra_vertex.retries` (429/5xx are retried) at the
:mod:`~hydra_vertex.polling` pace (short adaptive polls locally, Vertex's pace remotely), and
SIGTERM (the pipeline was cancelled) or Ctrl-C cancels the job before the launcher exits.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hydra_vertex import gcp_resources, retries
from hydra_vertex.polling import Pace

LAUNCH_LABEL = "hydra-vertex-launch"
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
# A job in one of these states is not resumed: a retried task launches a new one.
NOT_RESUMABLE = {
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_CANCELLING",
}


@dataclass(frozen=True)
class Kind:
    """One job collection of the v1 ``JobService``."""

    resource_type: str  # as written in gcp_resources
    method: str  # the GAPIC method suffix: ``hyperparameter_tuning_job`` / ``custom_job``

    def call(self, client: Any, verb: str, **kwargs: Any) -> Any:
        plural = "s" if verb == "list" else ""
        return getattr(client, f"{verb}_{self.method}{plural}")(**kwargs)


TUNING = Kind("HyperparameterTuningJob", "hyperparameter_tuning_job")
CUSTOM = Kind("CustomJob", "custom_job")


def idempotency_value(key: str) -> str:
    """A label value (lowercase hex, <= 63 chars) for a launch key such as ``<run>/<task>``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


def state_name(job: Any) -> str:
    state = job.state
    return str(getattr(state, "name", state))


def find_existing(client: Any, kind: Kind, parent: str, label_value: str) -> Any | None:
    """The newest resumable job under ``parent`` that carries our launch label, or None.

    The filter is sent (Vertex applies it) and checked again here (an emulator may ignore it).
    """
    request = {"parent": parent, "filter": f'labels.{LAUNCH_LABEL}="{label_value}"'}
    pager = retries.call(lambda: kind.call(client, "list", request=request), "list jobs")
    found = [
        j
        for j in pager
        if dict(j.labels).get(LAUNCH_LABEL) == label_value and state_name(j) not in NOT_RESUMABLE
    ]
    if not found:
        return None
    return max(found, key=lambda j: (j.create_time.timestamp() if j.create_time else 0, j.name))


@dataclass
class Launched:
    """The job a launcher is responsible for; ``name`` is set once it exists."""

    name: str | None = None


def create_once(
    client: Any,
    kind: Kind,
    parent: str,
    job: Any,
    *,
    key: str,
    gcp_resources_path: str | None,
    api_base: str,
    log: Callable[[str], None] = print,
    launched: Launched | None = None,
) -> str:
    """Create ``job`` unless this launch already did; returns the job's resource name.

    A job found but FAILED, CANCELLED or gone is not resumed: a retried task launches anew.
    """
    from google.api_core import exceptions as gexc

    if gcp_resources_path:
        name = gcp_resources.read(gcp_resources_path, kind.resource_type)
        if name:
            try:
                found = retries.call(lambda: kind.call(client, "get", name=name), f"get {name}")
            except gexc.NotFound:
                found = None
            if found is not None and state_name(found) not in NOT_RESUMABLE:
                log(f"resuming {kind.resource_type} {name} (from gcp_resources)")
                if launched is not None:
                    launched.name = name
                return name
            log(
                f"not resuming {kind.resource_type} {name}: "
                f"{state_name(found) if found is not None else 'not found'}"
            )
    label_value = idempotency_value(key)
    existing = find_existing(client, kind, parent, label_value)
    if existing is not None:
        log(f"resuming {kind.resource_type} {existing.name} (found by its launch label)")
        name = str(existing.name)
    else:
        job.labels[LAUNCH_LABEL] = label_value
        # Not retried: a create that failed with 5xx may still have created the job; the label
        # finds it on the next attempt of the task.
        created = kind.call(client, "create", parent=parent, **{kind.method: job})
        name = str(created.name)
        log(f"created {kind.resource_type} {name}")
    if launched is not None:
        launched.name = name
    if gcp_resources_path:
        gcp_resources.write(gcp_resources_path, kind.resource_type, name, api_base)
    return name


def progress_mark(job: Any) -> tuple[Any, ...]:
    """What a poll compares to see whether a job moved on: its state and its trials' states."""
    trials = getattr(job, "trials", None) or []
    return (state_name(job), tuple((t.id, str(getattr(t.state, "name", t.state))) for t in trials))


def wait(
    client: Any,
    kind: Kind,
    name: str,
    *,
    pace: Pace,
    on_poll: Callable[[Any], None] | None = None,
) -> Any:
    """Poll until the job is in a terminal state, at ``pace`` (short polls while the job keeps
    changing); returns the final job."""
    seen: tuple[Any, ...] | None = None
    while True:
        job = retries.call(lambda: kind.call(client, "get", name=name), f"get {name}")
        if on_poll is not None:
            on_poll(job)
        if state_name(job) in TERMINAL:
            return job
        mark = progress_mark(job)
        time.sleep(pace.after(mark != seen))
        seen = mark


@contextlib.contextmanager
def cancel_on_sigterm(client: Any, kind: Kind) -> Iterator[Launched]:
    """While inside, SIGTERM cancels the launched job (if one exists yet), then exits 143; Ctrl-C
    (``KeyboardInterrupt``) cancels it too, then goes on up.

    Enter it before creating the job and pass the yielded holder to :func:`create_once`, which
    sets its ``name`` as soon as the job exists: a SIGTERM during the create still cancels it.
    """
    launched = Launched()

    def cancel(why: str) -> None:
        name = launched.name
        if name:
            print(f"hydra-vertex: {why}: cancelling {name}", file=sys.stderr, flush=True)
            with contextlib.suppress(Exception):
                retries.call(
                    lambda: kind.call(client, "cancel", name=name), f"cancel {name}", attempts=3
                )
        else:
            print(f"hydra-vertex: {why} before a job was created", file=sys.stderr, flush=True)

    terminated: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        # Unwind first, cancel after: the handler may interrupt the client in the middle of a
        # call, and the cancel goes through the same client.
        terminated.append(signum)
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield launched
    except KeyboardInterrupt:
        cancel("interrupted")
        raise
    except SystemExit:
        if terminated:
            cancel("SIGTERM")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_once(
    client: Any,
    kind: Kind,
    parent: str,
    job: Any,
    *,
    key: str,
    gcp_resources_path: str | None,
    api_base: str,
    pace: Pace,
    log: Callable[[str], None] = print,
    on_poll: Callable[[Any], None] | None = None,
) -> Any:
    """Create (once) and wait for ``job``, cancelling it on SIGTERM; returns the final job."""
    with cancel_on_sigterm(client, kind) as launched:
        name = create_once(
            client,
            kind,
            parent,
            job,
            key=key,
            gcp_resources_path=gcp_resources_path,
            api_base=api_base,
            log=log,
            launched=launched,
        )
        return wait(client, kind, name, pace=pace, on_poll=on_poll)
