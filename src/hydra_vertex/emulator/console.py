"""The emulator's read-only console: HTML pages over the store, for a browser.

:func:`render` answers three kinds of ``GET``:

- ``/`` (or ``/console``): every tuning job, custom job, pipeline run and schedule with its state;
- ``/console/<collection>/<id>``: one of them; a tuning job with its trials (parameters, values,
  infeasible reasons, links to their logs), a pipeline run with its tasks;
- ``/console/<collection>/<id>/trials/<trial id>/log`` and ``/console/customJobs/<id>/log``: the
  tail of the process's ``stdout.log`` and ``stderr.log`` (``?lines=N``, at most 5000).

It never changes anything. The server applies its security rules (bearer token, Host and Origin
checks) before calling it; a browser cannot send a bearer header, so the server accepts the token
as ``?token=...`` on these pages only, and every link here carries it on. Everything shown is
escaped; the page has no script, loads nothing, and carries a Content-Security-Policy (also in
:data:`CSP`, for the response header) that allows only its own style block. Pages with something
still running refresh themselves every few seconds (``<meta http-equiv="refresh">``, no script).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from hydra_vertex.emulator.router import Answer, Raw, Request, Route
from hydra_vertex.html_style import STYLE as _REPORT_STYLE
from hydra_vertex.html_style import csp as _csp
from hydra_vertex.reasons import strip_ansi

__all__ = ["CONTENT_TYPE", "CSP", "render", "routes"]

CONTENT_TYPE = "text/html; charset=utf-8"
REFRESH_SECONDS = 3
DEFAULT_LOG_LINES = 200
MAX_LOG_LINES = 5000
_TAIL_BYTES = 1 << 20

STYLE = (
    _REPORT_STYLE
    + """
nav { margin-bottom: 12px; font-size: 13px; } nav a { margin-right: 10px; }
a { color: #0b5cad; text-decoration: none; } a:hover { text-decoration: underline; }
pre.log { background: #0f1720; color: #e6edf3; padding: 10px 14px; border-radius: 6px;
  overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px;
  max-height: 70vh; overflow-y: auto; }
details pre { font-size: 12px; background: var(--panel); padding: 8px; overflow-x: auto; }
.badge.SUCCEEDED, .badge.JOB_STATE_SUCCEEDED,
.badge.PIPELINE_STATE_SUCCEEDED { background: var(--ok); }
.badge.JOB_STATE_FAILED, .badge.PIPELINE_STATE_FAILED, .badge.JOB_STATE_CANCELLED,
.badge.PIPELINE_STATE_CANCELLED { background: var(--bad); }
.badge.JOB_STATE_RUNNING, .badge.JOB_STATE_PENDING, .badge.JOB_STATE_QUEUED,
.badge.JOB_STATE_CANCELLING, .badge.PIPELINE_STATE_RUNNING, .badge.PIPELINE_STATE_PENDING,
.badge.PIPELINE_STATE_QUEUED, .badge.PIPELINE_STATE_CANCELLING { background: var(--run); }
.badge.ACTIVE { background: var(--ok); } .badge.PAUSED { background: var(--muted); }
"""
)
CSP = _csp(STYLE) + "; frame-ancestors 'none'"

#: Collections shown, in this order, with their headings; those the store lacks are left out.
SECTIONS = (
    ("hyperparameterTuningJobs", "Tuning jobs"),
    ("customJobs", "Custom jobs"),
    ("pipelineJobs", "Pipeline runs"),
    ("schedules", "Schedules"),
)
_TITLES = dict(SECTIONS)
_TERMINAL = re.compile(r"(SUCCEEDED|FAILED|CANCELLED|EXPIRED|COMPLETED|PAUSED|INFEASIBLE)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
#: The console's pages (each a ``GET``; ``HEAD`` too): the index, a job, a job's or a trial's log.
PAGES = (
    "/",
    "/console",
    "/console/",
    "/console/{collection}/{job_id}",
    "/console/{collection}/{job_id}/log",
    "/console/{collection}/{job_id}/trials/{trial_id}/log",
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def routes(store: Any) -> list[Route]:
    """The console's routes: browser pages (the token may come as ``?token=``)."""

    def page(request: Request, **_: str) -> Answer:
        status, content_type, html = render(store, request.path, request.query)
        return status, Raw(html, content_type, dict(HEADERS))

    return [Route("GET", template, page, browser=True) for template in PAGES]


def _e(value: object) -> str:
    return escape(strip_ansi(str(value)), quote=True)  # app logs may be coloured


class _Page:
    """Links that keep the ``token`` query parameter; the page skeleton."""

    def __init__(self, query: Mapping[str, str]) -> None:
        token = query.get("token")
        self.suffix = "?" + urlencode({"token": token}) if token else ""

    def href(self, *parts: str, **params: str) -> str:
        path = "/console/" + "/".join(quote(p, safe="") for p in parts) if parts else "/"
        q = self.suffix
        if params:
            q = (q + "&" if q else "?") + urlencode(params)
        return _e(path + q)

    def link(self, text: str, *parts: str, **params: str) -> str:
        return f'<a href="{self.href(*parts, **params)}">{_e(text)}</a>'

    def html(self, title: str, body: str, *, refresh: bool = False, crumbs: str = "") -> bytes:
        meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
        nav = f"<nav>{self.link('hydra-vertex emulator')}{crumbs}</nav>"
        note = f" · refreshes every {REFRESH_SECONDS} s" if refresh else ""
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_e(_csp(STYLE))}">'
            '<meta name="referrer" content="no-referrer">'
            f"{meta}<title>{_e(title)} · hydra-vertex emulator</title>"
            f"<style>{STYLE}</style></head><body>{nav}<h1>{_e(title)}</h1>{body}"
            f"<footer>Read-only console of the hydra-vertex emulator{note}.</footer>"
            "</body></html>\n"
        ).encode()


def _badge(state: object) -> str:
    s = str(state or "UNKNOWN")
    return f'<span class="badge {_e(s)}" data-state="{_e(s)}">{_e(s)}</span>'


def _running(state: object) -> bool:
    return not _TERMINAL.search(str(state or ""))


def _error(status: int, message: str, page: _Page) -> tuple[int, str, bytes]:
    body = f'<p class="error" id="error">{_e(message)}</p>'
    return status, CONTENT_TYPE, page.html(f"{status}", body)


def _collections(store: Any) -> list[str]:
    from hydra_vertex.emulator import store as store_module

    known = getattr(store_module, "COLLECTIONS", ())
    return [c for c, _ in SECTIONS if c in known]


def _fmt_time(value: object) -> str:
    s = str(value or "")
    return s.replace("T", " ")[:19] if s else ""


def _metric_id(resource: Mapping[str, Any]) -> str:
    metrics = (resource.get("studySpec") or {}).get("metrics") or [{}]
    return str(metrics[0].get("metricId", ""))


def _trial_value(trial: Mapping[str, Any], metric_id: str) -> str:
    for m in (trial.get("finalMeasurement") or {}).get("metrics") or []:
        if m.get("metricId") == metric_id:
            v = m.get("value")
            return f"{v:.6g}" if isinstance(v, int | float) else str(v)
    return ""


def _param_value(p: Mapping[str, Any]) -> str:
    v = p.get("value")
    return f"{v:.6g}" if isinstance(v, float) else str(v)


# -- pages ---------------------------------------------------------------------------------------


def _index(store: Any, page: _Page) -> tuple[int, str, bytes]:
    parts: list[str] = []
    refresh = False
    for collection in _collections(store):
        rows = []
        items = sorted(
            store.items(collection),
            key=lambda kv: str(kv[1].get("resource", {}).get("createTime", "")),
            reverse=True,
        )
        for job_id, rec in items:
            res = rec.get("resource", {})
            state = res.get("state", "")
            refresh = refresh or _running(state)
            extra = ""
            if collection == "hyperparameterTuningJobs":
                trials = res.get("trials") or []
                done = sum(1 for t in trials if t.get("state") in ("SUCCEEDED", "INFEASIBLE"))
                extra = f"{done}/{res.get('maxTrialCount', '?')} trials"
            elif collection == "schedules":
                extra = f"cron {res.get('cron', '')}"
            elif collection == "pipelineJobs":
                tasks = (res.get("jobDetail") or {}).get("taskDetails") or []
                extra = f"{len(tasks)} tasks" if tasks else ""
            rows.append(
                f'<tr data-collection="{_e(collection)}" data-id="{_e(job_id)}">'
                f"<td>{page.link(res.get('displayName') or job_id, collection, job_id)}</td>"
                f"<td>{_badge(state)}</td><td>{_e(extra)}</td>"
                f"<td>{_e(_fmt_time(res.get('createTime')))}</td>"
                f'<td class="params">{_e(job_id)}</td></tr>'
            )
        table = (
            f'<table id="{_e(collection)}"><thead><tr><th>name</th><th>state</th><th></th>'
            f"<th>created (UTC)</th><th>id</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            if rows
            else '<p class="muted">none</p>'
        )
        parts.append(f'<section><h2>{_e(_TITLES[collection])} ({len(rows)})</h2>{table}</section>')
    return 200, CONTENT_TYPE, page.html("Emulator console", "".join(parts), refresh=refresh)


def _job(store: Any, collection: str, job_id: str, page: _Page) -> tuple[int, str, bytes]:
    rec = store.get(collection, job_id)
    if rec is None:
        return _error(404, f"no {collection} with id {job_id!r}", page)
    res = rec.get("resource", {})
    state = res.get("state", "")
    title = str(res.get("displayName") or job_id)
    meta: list[tuple[str, str]] = [("resource", str(res.get("name", ""))), ("id", job_id)]
    for label, key in (
        ("created", "createTime"),
        ("started", "startTime"),
        ("ended", "endTime"),
        ("cron", "cron"),
        ("next run", "nextRunTime"),
        ("runs started", "startedRunCount"),
    ):
        if res.get(key) not in (None, ""):
            value = res[key]
            meta.append((label, _fmt_time(value) if key.endswith("Time") else str(value)))
    body = [
        f'<p>{_badge(state)}</p><dl class="meta" id="meta">',
        "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta),
        "</dl>",
    ]
    error = res.get("error") or {}
    if error.get("message"):
        body.append(f'<div class="error" id="error">{_e(error["message"])}</div>')
    refresh = _running(state)
    if collection == "hyperparameterTuningJobs":
        body.append(_trials(res, collection, job_id, page))
    elif collection == "customJobs":
        body.append(f"<p>{page.link('the job log', collection, job_id, 'log')}</p>")
    elif collection == "pipelineJobs":
        body.append(_tasks(res))
    body.append(
        "<details><summary>resource (JSON)</summary>"
        f'<pre id="resource">{_e(json.dumps(res, indent=2, sort_keys=True))}</pre></details>'
    )
    crumbs = f" › {_e(_TITLES.get(collection, collection))} › {_e(title)}"
    return 200, CONTENT_TYPE, page.html(title, "".join(body), refresh=refresh, crumbs=crumbs)


def _trials(res: Mapping[str, Any], collection: str, job_id: str, page: _Page) -> str:
    metric = _metric_id(res)
    goal = ((res.get("studySpec") or {}).get("metrics") or [{}])[0].get("goal", "")
    trials = res.get("trials") or []
    head = (
        f"<h2>Trials ({len(trials)} of {_e(res.get('maxTrialCount', '?'))}, "
        f"{_e(res.get('parallelTrialCount', '?'))} at a time; {_e(goal)} {_e(metric)})</h2>"
    )
    rows = []
    for t in trials:
        tid = str(t.get("id", ""))
        params = " ".join(
            f"{p.get('parameterId')}={_param_value(p)}" for p in t.get("parameters") or []
        )
        log = ""
        if _SEGMENT.match(tid):
            log = page.link("log", collection, job_id, "trials", tid, "log")
        rows.append(
            f'<tr data-trial="{_e(tid)}" data-state="{_e(t.get("state", ""))}">'
            f'<td class="num">{_e(tid)}</td><td>{_badge(t.get("state"))}</td>'
            f'<td class="num">{_e(_trial_value(t, metric))}</td>'
            f'<td class="params">{_e(params)}</td>'
            f'<td class="reason">{_e(t.get("infeasibleReason", ""))}</td><td>{log}</td></tr>'
        )
    if not rows:
        return head + '<p class="muted">no trials yet</p>'
    return (
        head + f'<table id="trials"><thead><tr><th>trial</th><th>state</th><th>{_e(metric)}</th>'
        "<th>parameters</th><th>infeasible reason</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _tasks(res: Mapping[str, Any]) -> str:
    tasks = (res.get("jobDetail") or {}).get("taskDetails") or []
    if not tasks:
        return '<p class="muted">no tasks yet</p>'
    rows = "".join(
        f'<tr data-task="{_e(t.get("taskName", ""))}"><td>{_e(t.get("taskName", ""))}</td>'
        f"<td>{_badge(t.get('state'))}</td>"
        f"<td>{_e(_fmt_time(t.get('startTime')))}</td><td>{_e(_fmt_time(t.get('endTime')))}</td>"
        f'<td class="reason">{_e((t.get("error") or {}).get("message", ""))}</td></tr>'
        for t in tasks
    )
    return (
        '<h2>Tasks</h2><table id="tasks"><thead><tr><th>task</th><th>state</th><th>started</th>'
        f"<th>ended</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def tail(path: Path, lines: int) -> str | None:
    """The last ``lines`` lines of ``path`` (None if it is missing or a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - _TAIL_BYTES))
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _log(
    store: Any, collection: str, job_id: str, trial_id: str | None, page: _Page, lines: int
) -> tuple[int, str, bytes]:
    rec = store.get(collection, job_id)
    if rec is None:
        return _error(404, f"no {collection} with id {job_id!r}", page)
    res = rec.get("resource", {})
    state = res.get("state", "")
    if trial_id is not None:
        trial = next((t for t in res.get("trials") or [] if str(t.get("id")) == trial_id), None)
        if trial is None:
            return _error(404, f"job {job_id} has no trial {trial_id!r}", page)
        state = trial.get("state", "")
    try:
        directory = store.run_dir(job_id, trial_id)
    except Exception:
        return _error(400, f"invalid job or trial id {job_id!r}/{trial_id!r}", page)
    name = str(res.get("displayName") or job_id)
    title = f"{name}, trial {trial_id}: log" if trial_id else f"{name}: log"
    body = [f"<p>{_badge(state)} last {lines} lines of each stream, from {_e(directory)}</p>"]
    for stream in ("stderr", "stdout"):
        text = tail(directory / f"{stream}.log", lines)
        if text is None:
            content = f'<p class="muted" id="{stream}">no {stream}.log (yet)</p>'
        elif not text:
            content = f'<p class="muted" id="{stream}">empty</p>'
        else:
            content = f'<pre class="log" id="{stream}">{_e(text)}</pre>'

        body.append(f"<h2>{stream}</h2>{content}")
    crumbs = (
        f" › {_e(_TITLES.get(collection, collection))} › "
        f"{page.link(name, collection, job_id)}"
    )
    html = page.html(title, "".join(body), refresh=_running(state), crumbs=crumbs)
    return 200, CONTENT_TYPE, html


def render(store: Any, path: str, query: Mapping[str, str]) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` for a console ``GET`` of ``path`` (no query string in it;
    ``query`` holds the parsed parameters: ``token`` is carried on in links, ``lines`` sets the
    log tail's length)."""
    page = _Page(query)
    parts = [p for p in path.split("/") if p]
    if parts == [] or parts == ["console"]:
        return _index(store, page)
    if parts[0] != "console" or not all(_SEGMENT.match(p) for p in parts[1:]):
        return _error(404, f"no console page at {path!r}", page)
    rest = parts[1:]
    collections = _collections(store)
    if not rest or rest[0] not in collections:
        return _error(404, f"no collection {rest[0] if rest else ''!r} in the console", page)
    collection = rest[0]
    try:
        lines = min(MAX_LOG_LINES, max(1, int(query.get("lines", DEFAULT_LOG_LINES))))
    except ValueError:
        return _error(400, f"lines={query.get('lines')!r} is not a whole number", page)
    if len(rest) == 2:
        return _job(store, collection, rest[1], page)
    if len(rest) == 3 and rest[2] == "log" and collection == "customJobs":
        return _log(store, collection, rest[1], None, page, lines)
    if (
        len(rest) == 5
        and collection == "hyperparameterTuningJobs"
        and rest[2] == "trials"
        and rest[4] == "log"
    ):
        return _log(store, collection, rest[1], rest[3], page, lines)
    return _error(404, f"no console page at {path!r}", page)
