"""The emulator's own details of a job, read over HTTP from its ``/emulator/v1`` routes: each
trial's GPUs, which trials were stopped early (and what that saved), the job's warnings.

Vertex's API has no field for these (an early-stopped trial is just SUCCEEDED there), so they are
empty when the endpoint is Vertex itself, and every reader treats "no details" as "nothing to
add". Reading never raises: progress and summaries must not break on it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "/emulator/v1"


@dataclass(frozen=True)
class TrialDetails:
    devices: tuple[str, ...] | None = None  # None: the machine has no GPU (or not the emulator)
    stopped_early: bool = False
    stop_reason: str = ""
    saved_steps: int | None = None
    saved_seconds: float | None = None


@dataclass(frozen=True)
class JobDetails:
    warnings: tuple[str, ...] = ()
    devices: tuple[str, ...] | None = None  # a custom job's
    trials: Mapping[str, TrialDetails] = field(default_factory=dict)


def _get(endpoint: str, token: str | None, path: str, timeout: float) -> Any:
    request = urllib.request.Request(
        endpoint.rstrip("/") + path, headers={"Authorization": f"Bearer {token or ''}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def job_details(
    endpoint: str | None, token: str | None, job_name: str, timeout: float = 5.0
) -> JobDetails:
    """The details of ``job_name`` (``projects/P/locations/L/<collection>/ID``) from the
    emulator at ``endpoint``; empty when there are none (no endpoint, Vertex, an error)."""
    if not endpoint or not job_name:
        return JobDetails()
    try:
        data = _get(endpoint, token, f"{PREFIX}/{job_name}", timeout)
    except (OSError, ValueError):
        return JobDetails()
    return parse_job_details(data)


def parse_job_details(data: Mapping[str, Any]) -> JobDetails:
    def devices(value: Any) -> tuple[str, ...] | None:
        return None if value is None else tuple(str(d) for d in value)

    trials = {
        str(t.get("id")): TrialDetails(
            devices=devices(t.get("devices")),
            stopped_early=bool(t.get("stoppedEarly")),
            stop_reason=str(t.get("stopReason") or ""),
            saved_steps=t.get("savedSteps"),
            saved_seconds=t.get("savedSeconds"),
        )
        for t in data.get("trials") or []
    }
    return JobDetails(
        warnings=tuple(str(w) for w in data.get("warnings") or []),
        devices=devices(data.get("devices")),
        trials=trials,
    )


def emulator_devices(endpoint: str, token: str | None, timeout: float = 5.0) -> dict[str, Any]:
    """The emulator's device pool (``devices``, ``source``, ``held``, ``waiting``); {} on error."""
    try:
        data = _get(endpoint, token, f"{PREFIX}/devices", timeout)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def console_token(endpoint: str, token: str | None, timeout: float = 5.0) -> str | None:
    """The console token of the emulator at ``endpoint`` (asked with the API ``token``: the
    ``url`` of ``/emulator/v1/console``); None on error."""
    from urllib.parse import parse_qs, urlsplit

    try:
        data = _get(endpoint, token, f"{PREFIX}/console", timeout)
    except (OSError, ValueError):
        return None
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str):
        return None
    return parse_qs(urlsplit(url).query).get("token", [""])[-1]


def from_environment(job_name: str) -> JobDetails:
    """:func:`job_details` from the emulator named by ``HYDRA_VERTEX_EMULATOR`` (empty when
    Vertex itself is the endpoint)."""
    from hydra_vertex.vertex import resolve_endpoint

    resolved = resolve_endpoint()
    if not resolved.is_emulator:
        return JobDetails()
    return job_details(resolved.api_endpoint, resolved.token, job_name)
