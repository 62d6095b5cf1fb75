"""What only this emulator knows about a job, served under its own prefix ``/emulator/v1``.

Vertex's resources have no field for a local trial's GPUs, for "stopped early" (Vertex ends a
stopped trial SUCCEEDED, as the emulator does) or for the emulator's warnings, and the API answers
render stored resources through the proto types, which drop the internal ``_`` keys. These routes
hand them to clients (``hydra_vertex.local_details``: progress, ``SUMMARY.json``, the report),
behind the same token as the rest of the API:

- ``GET /emulator/v1/devices``: the machine's devices, where the list came from, which process
  holds which, and who waits (``{"devices", "source", "held": {owner: [...]}, "waiting"}``).
- ``GET /emulator/v1/projects/P/locations/L/hyperparameterTuningJobs/ID``: ``{"name",
  "warnings", "trials": [{"id", "devices", "stoppedEarly", "stopReason", "savedSteps",
  "savedSeconds"}]}`` (``devices`` only on a machine with GPUs; the stop fields only for trials
  stopped early).
- ``GET /emulator/v1/projects/P/locations/L/customJobs/ID``: ``{"name", "warnings", "devices"}``.
- ``GET /emulator/v1/console``: ``{"url"}``, the console's link with its read-only console
  token, for a client that holds the API token (``hydra-vertex open`` with
  ``HYDRA_VERTEX_EMULATOR``); the console token opens nothing here.

Where they are stored (what the console reads): a trial's ``_devices`` (list),
``_early_stopped`` (the rule's reason) and ``_saved`` (``{"steps", "seconds"}``); a custom job's
``_devices`` and every job's ``_warnings`` (list) on the resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra_vertex.emulator.devices import DevicePool
from hydra_vertex.emulator.router import Answer, ApiError, Request, Route
from hydra_vertex.emulator.store import Store, valid_id

PREFIX = "/emulator/v1"
_JOB = PREFIX + "/projects/{project}/locations/{location}/{collection}/{job_id}"
_COLLECTIONS = ("hyperparameterTuningJobs", "customJobs")


def routes(
    store: Store, devices: DevicePool, console_url: Callable[[], str] = lambda: ""
) -> list[Route]:
    def pool(request: Request) -> Answer:
        return 200, {
            "devices": list(devices.devices),
            "source": devices.source,
            "held": {k: list(v) for k, v in devices.held().items()},
            "waiting": devices.waiting(),
        }

    def job(request: Request, project: str, location: str, collection: str, job_id: str) -> Answer:
        known = collection in _COLLECTIONS and valid_id(job_id)
        rec = store.get(collection, job_id) if known else None
        name = f"projects/{project}/locations/{location}/{collection}/{job_id}"
        if rec is None or rec["resource"].get("name") != name:
            raise ApiError(404, f"{name} not found")
        return 200, details(rec["resource"])

    def console(request: Request) -> Answer:
        return 200, {"url": console_url()}

    return [
        Route("GET", PREFIX + "/devices", pool),
        Route("GET", PREFIX + "/console", console),
        Route("GET", _JOB, job),
    ]


def details(resource: dict[str, Any]) -> dict[str, Any]:
    """The local details of a stored job resource (see the module docstring)."""
    out: dict[str, Any] = {
        "name": resource.get("name", ""),
        "warnings": list(resource.get("_warnings") or []),
    }
    if "_devices" in resource:
        out["devices"] = list(resource["_devices"])
    if "trials" in resource or "trialJobSpec" in resource:
        out["trials"] = [_trial(t) for t in resource.get("trials") or []]
    return out


def _trial(trial: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(trial.get("id", ""))}
    if "_devices" in trial:
        out["devices"] = list(trial["_devices"])
    if trial.get("_early_stopped"):
        saved = trial.get("_saved") or {}
        out.update(
            stoppedEarly=True,
            stopReason=str(trial["_early_stopped"]),
            savedSteps=saved.get("steps"),
            savedSeconds=saved.get("seconds"),
        )
    return out
