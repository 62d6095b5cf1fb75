"""What every console page shares: escaping, the page skeleton (style, CSP, refresh), links that
carry the token, state badges, times and durations."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from hydra_vertex.html_style import STYLE as _REPORT_STYLE
from hydra_vertex.html_style import csp as _csp
from hydra_vertex.reasons import strip_ansi

CONTENT_TYPE = "text/html; charset=utf-8"
REFRESH_SECONDS = 3

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
th a { color: var(--fg); } th a.sorted { text-decoration: underline; }
td.running { color: var(--run); font-weight: 600; }
.actions { display: flex; gap: 12px; align-items: center; margin: 8px 0 16px; }
button { font: inherit; padding: 4px 14px; border-radius: 6px; border: 1px solid var(--bad);
  background: #fff; color: var(--bad); cursor: pointer; font-weight: 600; }
button.primary { border-color: #0b5cad; color: #0b5cad; }
.notice { border-left: 4px solid var(--ok); background: #eaf6ec; padding: 8px 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
td.indent1 { padding-left: 24px; } td.indent2 { padding-left: 40px; }
td.indent3 { padding-left: 56px; }
input[type=password] { font: inherit; padding: 4px 8px; width: 28em; }
"""
)
# The console's pages post their forms (cancel, the login) to themselves, and nothing else.
PAGE_CSP = _csp(STYLE).replace("form-action 'none'", "form-action 'self'")
CSP = PAGE_CSP + "; frame-ancestors 'none'"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser posts a form with "Origin: null",
    # which the server refuses; nothing on these pages leads to another origin.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_TERMINAL = re.compile(r"(SUCCEEDED|FAILED|CANCELLED|EXPIRED|COMPLETED|PAUSED|INFEASIBLE)$")
SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def e(value: object) -> str:
    return escape(strip_ansi(str(value)), quote=True)  # app logs may be coloured


class Page:
    """Links that keep the ``token`` query parameter; the page skeleton."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self.token = query.get("token") or ""
        self.suffix = "?" + urlencode({"token": self.token}) if self.token else ""

    def url(self, *parts: str, **params: str) -> str:
        """The console path of ``parts`` with the token and ``params`` (not escaped)."""
        path = "/console/" + "/".join(quote(p, safe="") for p in parts) if parts else "/"
        q = self.suffix
        if params:
            q = (q + "&" if q else "?") + urlencode(params)
        return path + q

    def href(self, *parts: str, **params: str) -> str:
        return e(self.url(*parts, **params))

    def link(self, text: str, *parts: str, **params: str) -> str:
        return f'<a href="{self.href(*parts, **params)}">{e(text)}</a>'

    def html(
        self, title: str, body: str, *, refresh: bool = False, crumbs: str = "", note: str = ""
    ) -> bytes:
        meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
        nav = f"<nav>{self.link('hydra-vertex emulator')}{crumbs}</nav>"
        again = f" · refreshes every {REFRESH_SECONDS} s while something runs" if refresh else ""
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{e(PAGE_CSP)}">'
            '<meta name="referrer" content="same-origin">'
            f"{meta}<title>{e(title)} · hydra-vertex emulator</title>"
            f"<style>{STYLE}</style></head><body>{nav}<h1>{e(title)}</h1>{body}"
            f"<footer>Console of the hydra-vertex emulator{e(note)}{again}.</footer>"
            "</body></html>\n"
        ).encode()


def badge(state: object) -> str:
    s = str(state or "UNKNOWN")
    return f'<span class="badge {e(s)}" data-state="{e(s)}">{e(s)}</span>'


def running(state: object) -> bool:
    return not _TERMINAL.search(str(state or ""))


def error_page(status: int, message: str, page: Page) -> tuple[int, str, bytes]:
    body = f'<p class="error" id="error">{e(message)}</p>'
    return status, CONTENT_TYPE, page.html(f"{status}", body)


def fmt_time(value: object) -> str:
    s = str(value or "")
    return s.replace("T", " ")[:19] if s else ""


def parse_time(value: object) -> datetime | None:
    from hydra_vertex.report_charts import parse_time as parse

    return parse(str(value)) if value else None


def seconds_between(start: object, end: object, now: datetime | None = None) -> float | None:
    """Seconds from ``start`` to ``end`` (to ``now`` when there is no end), or None."""
    a = parse_time(start)
    if a is None:
        return None
    b = parse_time(end) or now or datetime.now(UTC)
    return max(0.0, (b - a).total_seconds())


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else str(value)
