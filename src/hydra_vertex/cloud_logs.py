"""A job's or a trial's output, read from Cloud Logging with ``google-cloud-logging``: from Google
on Vertex AI, from the emulator locally (it answers the ``entries:list`` subset of the Logging v2
API over the same JSON client). One code path for both; only the endpoint differs.

Vertex AI writes a custom job's (and each tuning trial's) stdout and stderr to Cloud Logging
under the monitored resource ``ml_job`` with the job's id; a trial's entries carry its id as a
label. Which label is *unverified* against a live project: gcloud's log reader takes
``labels.trial_id`` first, then the older ``labels."ml.googleapis.com/trial_id"``, so the filter
asks for either (:data:`TRIAL_LABELS`).

``--follow`` polls with a ``timestamp>=`` bound on the last entry seen (entries seen at that
instant are skipped by insert id) and ends once the trial or the job has ended and one more poll
found nothing new.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: The labels a trial's log entries carry its id in (see the module's docstring).
TRIAL_LABELS = ("trial_id", "ml.googleapis.com/trial_id")
RESOURCE_TYPE = "ml_job"
PAGE_SIZE = 1000


def rfc3339(stamp: datetime) -> str:
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _label_term(label: str, value: str) -> str:
    key = label if label.isidentifier() else f'"{label}"'
    return f'labels.{key}="{value}"'


def job_filter(job_id: str, trial: str | None = None, since: datetime | None = None) -> str:
    """The Logging filter of a job's entries (one trial's with ``trial``), from ``since`` on (the
    job's creation: without a time bound the client library reads only the last 24 hours)."""
    terms = [f'resource.type="{RESOURCE_TYPE}"', f'resource.labels.job_id="{job_id}"']
    if trial is not None:
        terms.append("(" + " OR ".join(_label_term(k, trial) for k in TRIAL_LABELS) + ")")
    if since is not None:
        terms.append(f'timestamp>="{rfc3339(since)}"')
    return " AND ".join(terms)


@dataclass(frozen=True)
class Line:
    """One entry: its time, insert id, severity, trial (if any) and text."""

    timestamp: datetime | None
    insert_id: str
    severity: str
    trial: str | None
    text: str


def _text(entry: Any) -> str:
    payload = entry.payload
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        return str(payload.get("message", payload))
    return "" if payload is None else str(payload)


def _trial(entry: Any) -> str | None:
    labels = entry.labels or {}
    for key in TRIAL_LABELS:
        if labels.get(key):
            return str(labels[key])
    return None


def read(client: Any, project: str, flt: str) -> list[Line]:
    """Every entry ``flt`` matches, oldest first."""
    from google.cloud.logging import ASCENDING

    entries = client.list_entries(
        resource_names=[f"projects/{project}"], filter_=flt, order_by=ASCENDING, page_size=PAGE_SIZE
    )
    return [
        Line(
            e.timestamp,
            str(e.insert_id or ""),
            str(e.severity or ""),
            _trial(e),
            _text(e),
        )
        for e in entries
    ]


def follow(
    fetch: Callable[[datetime | None], list[Line]],
    ended: Callable[[], bool],
    *,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Line]:
    """The entries as they come: ``fetch(since)`` reads those at or after ``since``; stops once
    ``ended()`` said so before a poll that found nothing new."""
    since: datetime | None = None
    seen: set[str] = set()
    while True:
        done = ended()  # asked before the poll: what the job wrote before it ended is in it
        fresh = [line for line in fetch(since) if line.insert_id not in seen]
        for line in fresh:
            if line.timestamp is not None and (since is None or line.timestamp > since):
                since = line.timestamp
                seen = set()
            seen.add(line.insert_id)
            yield line
        if done and not fresh:
            return
        if not fresh:
            sleep(interval)
