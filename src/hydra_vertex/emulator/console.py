"""The emulator's console: HTML pages over the store, for a browser.

- ``/`` (or ``/console``): every tuning job, custom job, pipeline run and schedule with its state
  (a tuning job's trials done/failed/running and best value, the elapsed time);
- ``/console/<collection>/<id>``: one of them. A tuning job with its trials, one column per
  parameter, sortable (``?sort=value&order=desc``: links, no script), the best trial marked,
  durations and elapsed times, devices and early stops, and the charts of the report
  (:mod:`console_tuning`); a pipeline run with its outputs, the jobs it created and its tasks in
  DAG order (:mod:`console_pipeline`); a cancel button while it runs;
- ``/console/<collection>/<id>/trials/<trial id>/log`` and ``/console/customJobs/<id>/log``: the
  tail of the process's ``stdout.log`` and ``stderr.log`` (``?lines=N``, at most 5000);
- ``POST /console/<collection>/<id>:cancel``: the cancel button. It needs the per-page CSRF token
  of the page it came from, and :func:`may_act`: the API token, or a console started with
  ``--console-actions``. It cancels through the emulator's own Vertex API and redirects back.

The server applies its security rules (bearer token, Host and Origin checks) before calling any
of this; a browser cannot send a bearer header, so the token may come as ``?token=...`` on these
pages only, and every link and form here carries it on. Two tokens open them: the console token
(the printed link's: read-only, ``Request.auth == "console"``) and the API token
(``endpoint.json``'s, never printed: a sign-in with it also shows the cancel button). A page
opened without either is a login page (:func:`login`), not an error in JSON. Everything shown
is escaped; the pages have no script, load nothing, and carry a Content-Security-Policy (also in
:data:`CSP`, for the response header) that allows only their own style block and forms posted to
themselves. Pages with something still
running refresh themselves every few seconds (``<meta http-equiv="refresh">``, no script).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from hydra_vertex.emulator.console_page import (
    CONTENT_TYPE,
    CSP,
    HEADERS,
    REFRESH_SECONDS,
    SEGMENT,
    STYLE,
    Page,
    badge,
    e,
    error_page,
    fmt_time,
    fmt_value,
    running,
    seconds_between,
)
from hydra_vertex.emulator.router import Answer, ApiError, Raw, Request, Route
from hydra_vertex.report_charts import duration

__all__ = [
    "CONTENT_TYPE",
    "CSP",
    "REFRESH_SECONDS",
    "STYLE",
    "Console",
    "login",
    "may_act",
    "render",
    "routes",
]

DEFAULT_LOG_LINES = 200
MAX_LOG_LINES = 5000
CSRF_MAX_AGE = 3600  # seconds a page's cancel form stays valid
_TAIL_BYTES = 1 << 20

#: Collections shown, in this order, with their headings; those the store lacks are left out.
SECTIONS = (
    ("hyperparameterTuningJobs", "Tuning jobs"),
    ("customJobs", "Custom jobs"),
    ("pipelineJobs", "Pipeline runs"),
    ("schedules", "Schedules"),
)
_TITLES = dict(SECTIONS)
_CANCELLABLE = ("hyperparameterTuningJobs", "customJobs", "pipelineJobs")
#: The console's pages (each a ``GET``; ``HEAD`` too): the index, a job, a job's or a trial's log.
PAGES = (
    "/",
    "/console",
    "/console/",
    "/console/{collection}/{job_id}",
    "/console/{collection}/{job_id}/log",
    "/console/{collection}/{job_id}/trials/{trial_id}/log",
)
ApiCall = Callable[[str, str], Answer]


def may_act(auth: str, console_actions: bool) -> bool:
    """Whether a console caller may change something (cancel a job): one who showed the API
    token may; one with a read-only console token only on a console started with
    ``--console-actions``. ``auth`` is how the caller proved itself (:attr:`Request.auth`). The
    one place this is decided."""
    return auth == "api" or console_actions


class Csrf:
    """Per-page tokens for the console's forms: ``<issued>.<HMAC(secret, issued|scope)>``, valid
    for :data:`CSRF_MAX_AGE` seconds and only for the form's own target (``scope``)."""

    def __init__(self, secret: bytes | None = None, clock: Callable[[], float] = time.time):
        self.secret = secret or secrets.token_bytes(32)
        self.clock = clock

    def _mac(self, issued: int, scope: str) -> str:
        msg = f"{issued}|{scope}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def issue(self, scope: str) -> str:
        issued = int(self.clock())
        return f"{issued}.{self._mac(issued, scope)}"

    def check(self, token: str, scope: str) -> bool:
        issued_text, _, mac = token.partition(".")
        try:
            issued = int(issued_text)
        except ValueError:
            return False
        if not 0 <= self.clock() - issued <= CSRF_MAX_AGE:
            return False
        return hmac.compare_digest(mac, self._mac(issued, scope))


def _collections(store: Any) -> list[str]:
    from hydra_vertex.emulator import store as store_module

    known = getattr(store_module, "COLLECTIONS", ())
    return [c for c, _ in SECTIONS if c in known]


def login(path: str, query: Mapping[str, str]) -> tuple[int, Raw]:
    """The page a console URL without a valid token answers (401): what the token is, where to
    find the link with it, and a field to paste it into."""
    tried = " (the token given is not this emulator's)" if query.get("token") else ""
    body = (
        f'<p class="error" id="login-needed">This console needs its token: missing or invalid '
        f"bearer token{e(tried)}.</p>"
        "<p><code>hydra-vertex open</code> prints this console's address with its read-only "
        "console token (the link <code>hydra-vertex emulator</code> printed when it started "
        "carries it too). To cancel jobs here, sign in with the API token instead: "
        "<code>token</code> in the state directory's <code>endpoint.json</code>.</p>"
        f'<form method="get" action="{e(path or "/")}" id="login">'
        '<label>token <input type="password" name="token" autocomplete="off" required></label> '
        '<button class="primary" type="submit">open</button></form>'
    )
    html = Page({}).html("Emulator console: sign in", body)
    return 401, Raw(html, CONTENT_TYPE, dict(HEADERS))


class Console:
    """The pages and the cancel action over ``store``. ``api(method, path)`` calls the
    emulator's own API (the cancel goes through it); ``actions``: the console was started with
    ``--console-actions``."""

    def __init__(
        self,
        store: Any,
        *,
        actions: bool = False,
        api: ApiCall | None = None,
        csrf: Csrf | None = None,
    ) -> None:
        self.store = store
        self.actions = actions
        self.api = api
        self.csrf = csrf or Csrf()

    def routes(self) -> list[Route]:
        """The console's routes: browser pages (the token may come as ``?token=``)."""

        def page(request: Request, **_: str) -> Answer:
            status, content_type, html = self.render(request.path, request.query, request.auth)
            return status, Raw(html, content_type, dict(HEADERS))

        out = [Route("GET", template, page, browser=True) for template in PAGES]
        out.append(Route("POST", "/console/{collection}/{job_id}:cancel", self.cancel,
                         browser=True))
        return out

    # -- the cancel action -----------------------------------------------------------------------
    def cancel(self, request: Request, collection: str, job_id: str) -> Answer:
        page = Page(request.query)

        def refuse(status: int, message: str) -> Answer:
            code, content_type, html = error_page(status, message, page)
            return code, Raw(html, content_type, dict(HEADERS))

        if not may_act(request.auth, self.actions):
            return refuse(403, "cancelling needs the API token, or a console started with "
                               "'hydra-vertex emulator --console-actions'")
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        scope = f"{collection}/{job_id}:cancel"
        if not self.csrf.check(form.get("csrf", ""), scope):
            return refuse(403, "the form is stale or not this console's (CSRF check failed): "
                               "reload the page and try again")
        if collection not in _CANCELLABLE or not SEGMENT.match(job_id):
            return refuse(404, f"no {collection} with id {job_id!r}")
        rec = self.store.get(collection, job_id)
        if rec is None or self.api is None:
            return refuse(404, f"no {collection} with id {job_id!r}")
        try:
            self.api("POST", f"/v1/{rec['resource']['name']}:cancel")
        except ApiError as err:
            return refuse(err.code, err.message)
        location = page.url(collection, job_id, cancelled="1")
        return 303, Raw(b"", CONTENT_TYPE, {**HEADERS, "Location": location})

    def cancel_form(self, collection: str, job_id: str, page: Page, auth: str) -> str:
        if collection not in _CANCELLABLE:
            return ""
        if not may_act(auth, self.actions):
            return ('<p class="muted" id="cancel-disabled">Cancel needs a sign-in with the API '
                    "token (endpoint.json's <code>token</code>) or a console started with "
                    "--console-actions.</p>")
        token = self.csrf.issue(f"{collection}/{job_id}:cancel")
        action = f"/console/{collection}/{job_id}:cancel" + page.suffix
        return (
            f'<form method="post" action="{e(action)}" id="cancel-form">'
            f'<input type="hidden" name="csrf" value="{e(token)}">'
            '<button type="submit" id="cancel">Cancel job</button></form>'
        )

    # -- pages -----------------------------------------------------------------------------------
    def render(
        self, path: str, query: Mapping[str, str], auth: str = "api", now: datetime | None = None
    ) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for a console ``GET`` of ``path`` (no query string in
        it; ``query`` holds the parsed parameters: ``token`` is carried on in links, ``lines``
        sets a log tail's length, ``sort``/``order`` a trials table's order)."""
        page = Page(query)
        parts = [p for p in path.split("/") if p]
        if parts == [] or parts == ["console"]:
            return _index(self.store, page, now)
        if parts[0] != "console" or not all(SEGMENT.match(p) for p in parts[1:]):
            return error_page(404, f"no console page at {path!r}", page)
        rest = parts[1:]
        collections = _collections(self.store)
        if not rest or rest[0] not in collections:
            return error_page(
                404, f"no collection {rest[0] if rest else ''!r} in the console", page
            )
        collection = rest[0]
        try:
            lines = min(MAX_LOG_LINES, max(1, int(query.get("lines", DEFAULT_LOG_LINES))))
        except ValueError:
            return error_page(400, f"lines={query.get('lines')!r} is not a whole number", page)
        if len(rest) == 2:
            return self._job(collection, rest[1], page, query, auth, now)
        if len(rest) == 3 and rest[2] == "log" and collection == "customJobs":
            return _log(self.store, collection, rest[1], None, page, lines)
        if (
            len(rest) == 5
            and collection == "hyperparameterTuningJobs"
            and rest[2] == "trials"
            and rest[4] == "log"
        ):
            return _log(self.store, collection, rest[1], rest[3], page, lines)
        return error_page(404, f"no console page at {path!r}", page)

    def _job(
        self,
        collection: str,
        job_id: str,
        page: Page,
        query: Mapping[str, str],
        auth: str,
        now: datetime | None,
    ) -> tuple[int, str, bytes]:
        from hydra_vertex.emulator.console_pipeline import pipeline_section
        from hydra_vertex.emulator.console_tuning import trials_section

        rec = self.store.get(collection, job_id)
        if rec is None:
            return error_page(404, f"no {collection} with id {job_id!r}", page)
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
                meta.append((label, fmt_time(value) if key.endswith("Time") else str(value)))
        took = seconds_between(res.get("startTime"), res.get("endTime"), now)
        if took is not None and collection != "schedules":
            meta.append(("elapsed", duration(took) + (" so far" if running(state) else "")))
        body = [f'<div class="actions">{badge(state)}']
        if running(state):
            body.append(self.cancel_form(collection, job_id, page, auth))
        body.append("</div>")
        if query.get("cancelled"):
            body.append('<p class="notice" id="cancel-requested">Cancel requested.</p>')
        body += [
            '<dl class="meta" id="meta">',
            "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in meta),
            "</dl>",
        ]
        error = res.get("error") or {}
        if error.get("message"):
            body.append(f'<div class="error" id="error">{e(error["message"])}</div>')
        if collection == "hyperparameterTuningJobs":
            body.append(trials_section(res, collection, job_id, page, query, now))
        elif collection == "customJobs":
            body.append(f"<p>{page.link('the job log', collection, job_id, 'log')}</p>")
        elif collection == "pipelineJobs":
            body.append(pipeline_section(self.store, res, page, now))
        body.append(
            "<details><summary>resource (JSON)</summary>"
            f'<pre id="resource">{e(json.dumps(res, indent=2, sort_keys=True))}</pre></details>'
        )
        crumbs = f" › {e(_TITLES.get(collection, collection))} › {e(title)}"
        html = page.html(title, "".join(body), refresh=running(state), crumbs=crumbs)
        return 200, CONTENT_TYPE, html


def routes(store: Any, *, actions: bool = False, api: ApiCall | None = None) -> list[Route]:
    """The console's routes over ``store`` (see :class:`Console`)."""
    return Console(store, actions=actions, api=api).routes()


def render(
    store: Any, path: str, query: Mapping[str, str], now: datetime | None = None
) -> tuple[int, str, bytes]:
    """A console ``GET`` of ``path`` by a caller with the API token (:meth:`Console.render`)."""
    return Console(store).render(path, query, "api", now)


# -- the index -----------------------------------------------------------------------------------


def _index(store: Any, page: Page, now: datetime | None) -> tuple[int, str, bytes]:
    from hydra_vertex.emulator.console_tuning import counts, results

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
            refresh = refresh or running(state)
            extra = ""
            if collection == "hyperparameterTuningJobs":
                trials = res.get("trials") or []
                done = sum(1 for t in trials if t.get("state") in ("SUCCEEDED", "INFEASIBLE"))
                extra = f"{done}/{res.get('maxTrialCount', '?')} trials"
                try:
                    found, metric, _, best = results(res)
                except Exception:  # a record this console cannot read: its state is enough
                    found, metric, best = [], "", None
                ok, failed, live = counts(found)
                extra += f" ({ok} succeeded, {failed} failed, {live} running)"
                if best is not None:
                    extra += f"; best {metric}={fmt_value(best.value)} (trial {best.id})"
            elif collection == "schedules":
                extra = f"cron {res.get('cron', '')}"
            elif collection == "pipelineJobs":
                tasks = (res.get("jobDetail") or {}).get("taskDetails") or []
                extra = f"{len(tasks)} tasks" if tasks else ""
            took = seconds_between(res.get("startTime"), res.get("endTime"), now)
            elapsed = "" if took is None or collection == "schedules" else duration(took)
            rows.append(
                f'<tr data-collection="{e(collection)}" data-id="{e(job_id)}">'
                f"<td>{page.link(res.get('displayName') or job_id, collection, job_id)}</td>"
                f"<td>{badge(state)}</td><td>{e(extra)}</td>"
                f'<td class="num">{e(elapsed)}</td>'
                f"<td>{e(fmt_time(res.get('createTime')))}</td>"
                f'<td class="params">{e(job_id)}</td></tr>'
            )
        table = (
            f'<table id="{e(collection)}"><thead><tr><th>name</th><th>state</th><th></th>'
            "<th>elapsed</th><th>created (UTC)</th><th>id</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            if rows
            else '<p class="muted">none</p>'
        )
        parts.append(f'<section><h2>{e(_TITLES[collection])} ({len(rows)})</h2>{table}</section>')
    return 200, CONTENT_TYPE, page.html("Emulator console", "".join(parts), refresh=refresh)


# -- logs ----------------------------------------------------------------------------------------


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
    store: Any, collection: str, job_id: str, trial_id: str | None, page: Page, lines: int
) -> tuple[int, str, bytes]:
    rec = store.get(collection, job_id)
    if rec is None:
        return error_page(404, f"no {collection} with id {job_id!r}", page)
    res = rec.get("resource", {})
    state = res.get("state", "")
    if trial_id is not None:
        trial = next((t for t in res.get("trials") or [] if str(t.get("id")) == trial_id), None)
        if trial is None:
            return error_page(404, f"job {job_id} has no trial {trial_id!r}", page)
        state = trial.get("state", "")
    try:
        directory = store.run_dir(job_id, trial_id)
    except Exception:
        return error_page(400, f"invalid job or trial id {job_id!r}/{trial_id!r}", page)
    name = str(res.get("displayName") or job_id)
    title = f"{name}, trial {trial_id}: log" if trial_id else f"{name}: log"
    body = [f"<p>{badge(state)} last {lines} lines of each stream, from {e(directory)}</p>"]
    for stream in ("stderr", "stdout"):
        text = tail(directory / f"{stream}.log", lines)
        if text is None:
            content = f'<p class="muted" id="{stream}">no {stream}.log (yet)</p>'
        elif not text:
            content = f'<p class="muted" id="{stream}">empty</p>'
        else:
            content = f'<pre class="log" id="{stream}">{e(text)}</pre>'

        body.append(f"<h2>{stream}</h2>{content}")
    crumbs = (
        f" › {e(_TITLES.get(collection, collection))} › "
        f"{page.link(name, collection, job_id)}"
    )
    html = page.html(title, "".join(body), refresh=running(state), crumbs=crumbs)
    return 200, CONTENT_TYPE, html
