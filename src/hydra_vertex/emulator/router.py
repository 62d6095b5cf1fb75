"""One router for every service the emulator answers: Vertex AI, Cloud Storage, Cloud Build, the
KFP template registry and the console.

A :class:`Route` maps a method and a path template to a callable (moto's ``urls.py`` and
fake-gcs-server's route table are the models): the template uses the syntax of Google's HTTP rules
(``google.api.http``), so ``/v1/projects/{project}/locations/{location}/customJobs/{job_id}`` and
``/v1/{name=projects/*/locations/*/customJobs/*}`` are both templates. ``{var}`` and ``*`` match one
path segment, ``**`` any number of them (at least one character). Variable values reach the handler
percent-decoded, as keyword arguments (``schedule.name`` becomes ``schedule_name``); a handler is
``handler(request, **variables) -> (status, body)``.

A custom method's verb (``:cancel``) is matched as Google's HTTP rules do: a path that ends with
the verb of some route (``.../customJobs/1:pause``) is matched only by routes with a verb, so a
``{job_id}`` never swallows one.

One rule for what no route serves: an unknown path is 404 and a known path with another method is
405, both in Google's error envelope. ``HEAD`` is served by the ``GET`` route of a path unless a
route names ``HEAD`` itself (the server sends no body for it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import unquote


class ApiError(Exception):
    """An error answered in Google's envelope: ``{"error": {"code", "message", "status"}}``."""

    STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        405: "UNIMPLEMENTED",
        409: "ALREADY_EXISTS",
        413: "INVALID_ARGUMENT",
        500: "INTERNAL",
    }

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        message = clean_message(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or self.STATUS.get(code, "UNKNOWN")

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


_TRACEBACK = "Traceback (most recent call last):"


def clean_message(message: str) -> str:
    """An error message as a client shows it: no ANSI escapes, and a Python traceback in it
    reduced to its exception line."""
    from hydra_vertex.reasons import strip_ansi

    text = strip_ansi(message)
    if _TRACEBACK in text:
        head, _, trace = text.partition(_TRACEBACK)
        lines = [line.strip() for line in trace.splitlines() if line.strip()]
        text = (head.rstrip() + " " + (lines[-1] if lines else "")).strip()
    return text


@dataclass
class Raw:
    """A non-JSON answer (an object download, an HTML page)."""

    body: bytes
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Any
    body: bytes
    #: How the caller proved itself: ``api`` (the API token, or an emulator without one) or
    #: ``console`` (the read-only console token, accepted on console routes only): the
    #: console's ``may_act`` decides what each may do.
    auth: str = "api"


def json_body(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (empty: ``{}``); 400 otherwise."""
    try:
        data = json.loads(body or b"{}")
    except ValueError as e:
        raise ApiError(400, f"invalid JSON body: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the JSON body must be an object")
    return data


Answer = tuple[int, "dict[str, Any] | Raw"]
Handler = Callable[..., Answer]


@dataclass(frozen=True)
class Route:
    """``method`` + ``template`` -> ``handler``.

    ``rpc``: the Google method this route serves (``google.cloud.aiplatform.v1.JobService.
    CreateCustomJob``), checked against the client library's HTTP rules by the tests.
    ``browser``: a page a browser opens, so the bearer token may come as ``?token=`` (a browser
    cannot send the header).
    """

    method: str
    template: str
    handler: Handler
    rpc: str = ""
    browser: bool = False


@dataclass(frozen=True)
class Match:
    route: Route
    variables: dict[str, str]

    def __call__(self, request: Request) -> Answer:
        return self.route.handler(request, **self.variables)


_VARIABLE = re.compile(r"\{([A-Za-z_][\w.]*)(?:=([^}]*))?\}")
_VERB = re.compile(r":([A-Za-z]\w*)$")


def compile_template(template: str) -> re.Pattern[str]:
    """The regex of a Google HTTP rule path template (``/v1/{name=projects/*}:cancel``)."""
    out, pos = [], 0
    for m in _VARIABLE.finditer(template):
        out.append(_literal(template[pos : m.start()]))
        name = m.group(1).replace(".", "_")
        out.append(f"(?P<{name}>{_segments(m.group(2) or '*')})")
        pos = m.end()
    out.append(_literal(template[pos:]))
    return re.compile("^" + "".join(out) + "$")


def _literal(text: str) -> str:
    """Literal text of a template; a bare ``*``/``**`` segment outside a variable matches too."""
    return "/".join(_segments(part) if "*" in part else re.escape(part) for part in text.split("/"))


def _segments(pattern: str) -> str:
    parts = []
    for seg in pattern.split("/"):
        if seg == "**":
            parts.append(r".+")
        elif seg == "*":
            parts.append(r"[^/]+")
        else:
            parts.append(re.escape(seg))
    return "/".join(parts)


class Router:
    """Routes in order; the first route whose template and method fit answers."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._compiled = [
            (r, compile_template(r.template), bool(_VERB.search(r.template))) for r in self.routes
        ]
        self._verbs = {m.group(1) for r in self.routes if (m := _VERB.search(r.template))}

    def resolve(self, method: str, path: str) -> Match:
        """The route for ``method path`` (no query string in ``path``); 404/405 otherwise."""
        allowed: list[str] = []
        fallback: Match | None = None
        verb = _VERB.search(path.rsplit("/", 1)[-1])
        with_verb = verb is not None and verb.group(1) in self._verbs
        for route, pattern, has_verb in self._compiled:
            if with_verb != has_verb:
                continue
            m = pattern.match(path)
            if m is None:
                continue
            if route.method == method:
                return Match(route, {k: unquote(v) for k, v in m.groupdict().items()})
            if method == "HEAD" and route.method == "GET" and fallback is None:
                fallback = Match(route, {k: unquote(v) for k, v in m.groupdict().items()})
            allowed.append(route.method)
        if fallback is not None:
            return fallback
        if allowed:
            raise ApiError(
                405,
                f"method {method} is not allowed on {path!r} (allowed: "
                f"{', '.join(sorted(set(allowed)))})",
            )
        raise ApiError(
            404,
            f"no resource at {path!r}: the emulator serves Vertex AI v1 (custom, tuning and "
            "pipeline jobs, schedules), the Cloud Storage JSON API, Cloud Build v1, the KFP "
            "template registry and its console (see docs/emulator.md)",
        )
