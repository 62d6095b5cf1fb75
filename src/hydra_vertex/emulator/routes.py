"""The v1 routes table and its handlers. Handlers see parsed proto-JSON and the store only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from hydra_vertex.emulator.store import COLLECTIONS

_PROJECT = r"(?P<project>[a-z0-9][a-z0-9-]{0,62})"
_LOCATION = r"(?P<location>[a-z0-9][a-z0-9-]{0,62})"
_COLL = r"(?P<collection>customJobs|hyperparameterTuningJobs|pipelineJobs|schedules)"
_ID = r"(?P<job_id>[a-z0-9][a-z0-9-]{0,127})"
_PARENT = rf"/v1/projects/{_PROJECT}/locations/{_LOCATION}/{_COLL}"

MESSAGE_TYPES = {
    "customJobs": "CustomJob",
    "hyperparameterTuningJobs": "HyperparameterTuningJob",
    "pipelineJobs": "PipelineJob",
    "schedules": "Schedule",
}
assert set(MESSAGE_TYPES) == set(COLLECTIONS)


class ApiError(Exception):
    """An error answered in Google's envelope."""

    STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        413: "INVALID_ARGUMENT",
        500: "INTERNAL",
    }

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or self.STATUS.get(code, "UNKNOWN")

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: str  # the name of a method on the Api object


ROUTES: tuple[Route, ...] = (
    Route("POST", re.compile(rf"^{_PARENT}$"), "create"),
    Route("GET", re.compile(rf"^{_PARENT}$"), "list"),
    Route("GET", re.compile(rf"^{_PARENT}/{_ID}$"), "get"),
    Route("DELETE", re.compile(rf"^{_PARENT}/{_ID}$"), "delete"),
    Route("POST", re.compile(rf"^{_PARENT}/{_ID}:cancel$"), "cancel"),
    Route("POST", re.compile(rf"^{_PARENT}/{_ID}:pause$"), "pause"),
    Route("POST", re.compile(rf"^{_PARENT}/{_ID}:resume$"), "resume"),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    allowed = False
    for route in ROUTES:
        m = route.pattern.match(path)
        if m:
            if route.method == method:
                return route, m.groupdict()
            allowed = True
    if allowed:
        raise ApiError(405, f"method {method} is not allowed on {path!r}", "UNIMPLEMENTED")
    raise ApiError(
        404,
        f"no resource at {path!r} (the emulator serves v1 customJobs, hyperparameterTuningJobs, "
        "pipelineJobs and schedules under projects/*/locations/*)",
    )


def parse_message(collection: str, body: bytes) -> Any:
    """Parse a request body into the aiplatform_v1 type; unknown fields are rejected (400)."""
    from google.cloud.aiplatform_v1 import types

    cls = getattr(types, MESSAGE_TYPES[collection])
    try:
        text = body.decode("utf-8")
        json.loads(text)
        return cls.from_json(text, ignore_unknown_fields=False)
    except Exception as e:
        raise ApiError(400, f"invalid {MESSAGE_TYPES[collection]} body: {e}") from None


def to_proto_json(collection: str, resource: dict[str, Any], ints: bool = True) -> dict[str, Any]:
    """Render a stored resource through the proto type (drops internal ``_`` keys)."""
    from google.cloud.aiplatform_v1 import types

    cls = getattr(types, MESSAGE_TYPES[collection])
    msg = cls.from_json(json.dumps(_public(resource)), ignore_unknown_fields=True)
    out: dict[str, Any] = json.loads(
        cls.to_json(msg, use_integers_for_enums=ints, always_print_fields_with_no_presence=False)
    )
    return out


def _public(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [_public(v) for v in obj]
    return obj


Handler = Callable[..., tuple[int, dict[str, Any]]]
