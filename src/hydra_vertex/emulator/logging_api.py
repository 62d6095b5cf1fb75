"""The Cloud Logging v2 subset a log reader needs: ``POST /v2/entries:list``
(``google.logging.v2.LoggingServiceV2.ListLogEntries``), over the jobs' own log files.

What Vertex AI writes to Cloud Logging for a custom job or a tuning trial is its stdout and stderr,
one entry per line, under the monitored resource ``ml_job`` (``resource.labels.job_id``,
``project_id``, ``task_name``), log ``projects/P/logs/workerpool0-0``, severity INFO (stdout) or
ERROR (stderr), a trial's id in ``labels.trial_id``. The emulator answers the same entries from
``runs/<job>/[<trial>/]{stdout,stderr}.log``:

- ``insertId`` is stable (trial, stream and byte offset), so a reader polling with a
  ``timestamp>=`` bound can skip what it has seen;
- a line's ``timestamp`` is when the emulator first saw it (never later than the file's last
  write): its processes write plain text files without times. Lines of a run still going are
  served once complete; the last, unterminated line once the run has ended.
- the filter is a subset of the Logging query language: comparisons (``=``, ``!=``, ``>``,
  ``>=``, ``<``, ``<=``, ``:``, ``=~``, ``!~``) on field paths (``labels."a.b/c"``), ``AND``
  (or juxtaposition), ``OR`` (which binds tighter than ``AND``, as in Cloud Logging), ``NOT`` /
  ``-``, parentheses; timestamps compare as times and severities by level. Anything else is a
  400 naming the filter.
- ``orderBy`` ``timestamp asc`` (default) or ``timestamp desc``; ``pageSize`` (default 50, at
  most 1000) and ``pageToken``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hydra_vertex.emulator.router import Answer, ApiError, Request, Route, json_body
from hydra_vertex.emulator.store import Store

RPC = "google.logging.v2.LoggingServiceV2.ListLogEntries"
LOG_ID = "workerpool0-0"
RESOURCE_TYPE = "ml_job"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_ENDED = ("SUCCEEDED", "INFEASIBLE", "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED",
          "JOB_STATE_CANCELLED")
SEVERITIES = {
    "DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400, "ERROR": 500,
    "CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800,
}
_STREAMS = (("stdout", "INFO"), ("stderr", "ERROR"))


# -- the filter ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>>=|<=|!=|=~|!~|=|>|<|:)|(?P<dot>\.)'
    r'|"(?P<str>(?:[^"\\]|\\.)*)"|(?P<word>[^\s().=<>!:"]+))'
)

Node = tuple[Any, ...]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ApiError(400, f"invalid filter at character {pos + 1}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value)
        out.append((kind, value))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over the tokens: ``conj := disj ([AND] disj)*``, ``disj := unary (OR
    unary)*``, ``unary := (NOT|-) unary | ( conj ) | field OP value``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def error(self, why: str) -> ApiError:
        return ApiError(400, f"invalid filter {self.text!r}: {why}")

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.error("it ends too early")
        self.i += 1
        return tok

    def parse(self) -> Node:
        if not self.toks:
            return ("true",)
        node = self.conj()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def conj(self) -> Node:
        items = [self.disj()]
        while (tok := self.peek()) is not None and tok[0] != "rp":
            if tok == ("word", "AND"):
                self.i += 1
            items.append(self.disj())
        return items[0] if len(items) == 1 else ("and", *items)

    def disj(self) -> Node:
        items = [self.unary()]
        while self.peek() == ("word", "OR"):
            self.i += 1
            items.append(self.unary())
        return items[0] if len(items) == 1 else ("or", *items)

    def unary(self) -> Node:
        tok = self.take()
        if tok == ("word", "NOT"):
            return ("not", self.unary())
        if tok[0] == "word" and tok[1].startswith("-") and len(tok[1]) > 1:
            self.toks[self.i - 1] = ("word", tok[1][1:])
            self.i -= 1
            return ("not", self.unary())
        if tok[0] == "lp":
            node = self.conj()
            if self.peek() is None or self.take()[0] != "rp":
                raise self.error("a '(' is not closed")
            return node
        if tok[0] not in ("word", "str"):
            raise self.error(f"expected a field, got {tok[1]!r}")
        path = [tok[1]]
        while self.peek() is not None and self.peek()[0] == "dot":  # type: ignore[index]
            self.i += 1
            seg = self.take()
            if seg[0] not in ("word", "str"):
                raise self.error(f"expected a field name after '.', got {seg[1]!r}")
            path.append(seg[1])
        op = self.take()
        if op[0] != "op":
            raise self.error(f"expected a comparison after {'.'.join(path)!r}, got {op[1]!r}")
        value = self.take()
        if value[0] not in ("word", "str"):
            raise self.error(f"expected a value after {op[1]!r}, got {value[1]!r}")
        text = value[1]
        while value[0] == "word" and self.peek() is not None and self.peek()[0] == "dot":  # type: ignore[index]
            self.i += 1
            value = self.take()
            text += "." + value[1]
        return ("cmp", tuple(path), op[1], text)


def parse_filter(text: str) -> Node:
    """The filter's tree (a 400 :class:`ApiError` naming the filter when it cannot be read)."""
    return _Parser(text or "").parse()


def _time(text: str) -> datetime | None:
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if m is None:
        return None
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    zone = m.group(3) or "Z"
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{'+00:00' if zone == 'Z' else zone}")


def _lookup(entry: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = entry
    for seg in path:
        if not isinstance(value, Mapping) or seg not in value:
            return None
        value = value[seg]
    return value


def _compare(field: tuple[str, ...], op: str, have: Any, want: str) -> bool:
    if have is None:
        return op in ("!=", "!~")
    text = str(have)
    if op == ":":
        return want.lower() in text.lower()
    if op in ("=~", "!~"):
        try:
            found = re.search(want, text) is not None
        except re.error as e:
            raise ApiError(400, f"invalid regular expression {want!r} in the filter: {e}") from None
        return found == (op == "=~")
    a: Any
    b: Any
    if field[-1] in ("timestamp", "receiveTimestamp"):
        a, b = _time(text), _time(want)
        if b is None:
            raise ApiError(400, f"invalid timestamp {want!r} in the filter (RFC 3339 expected)")
    elif field == ("severity",):
        a, b = SEVERITIES.get(text.upper(), 0), SEVERITIES.get(want.upper())
        if b is None:
            raise ApiError(400, f"unknown severity {want!r} in the filter")
    else:
        a, b = text, want
    if a is None:
        return False
    return {
        "=": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b,
    }[op]


def matches(node: Node, entry: Mapping[str, Any]) -> bool:
    kind = node[0]
    if kind == "true":
        return True
    if kind == "and":
        return all(matches(n, entry) for n in node[1:])
    if kind == "or":
        return any(matches(n, entry) for n in node[1:])
    if kind == "not":
        return not matches(node[1], entry)
    _, path, op, want = node
    return _compare(path, op, _lookup(entry, path), want)


def required(node: Node, path: tuple[str, ...]) -> str | None:
    """The value ``path`` must equal for any entry to match (a top-level ``AND`` term), if any."""
    terms = node[1:] if node[0] == "and" else (node,)
    for term in terms:
        if term[0] == "cmp" and term[1] == path and term[2] == "=":
            return str(term[3])
    return None


# -- the entries ---------------------------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Stamps:
    """When each part of a log file was first seen: ``[(end offset, timestamp)]`` per file. A
    new part gets the time it is seen, never later than the file's last write, never earlier
    than the part before."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.parts: dict[Path, list[tuple[int, str]]] = {}

    def of(self, path: Path, size: int, mtime: float) -> list[tuple[int, str]]:
        with self.lock:
            parts = self.parts.setdefault(path, [])
            if not parts or size > parts[-1][0]:
                seen = min(self.clock(), datetime.fromtimestamp(mtime, UTC))
                stamp = _stamp(seen)
                if parts and stamp < parts[-1][1]:
                    stamp = parts[-1][1]
                parts.append((size, stamp))
            return list(parts)


@dataclass(frozen=True)
class _Source:
    project: str
    job_id: str
    trial_id: str | None
    directory: Path
    ended: bool


def _read(path: Path) -> tuple[bytes, float] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(), os.fstat(f.fileno()).st_mtime


class LoggingApi:
    """``entries:list`` over the store's jobs."""

    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.stamps = _Stamps(clock or (lambda: datetime.now(UTC)))

    def routes(self) -> list[Route]:
        return [Route("POST", "/v2/entries:list", self.list_entries, RPC)]

    def _sources(self, projects: set[str], job_id: str | None) -> Iterator[_Source]:
        for collection in ("customJobs", "hyperparameterTuningJobs"):
            for jid, rec in self.store.items(collection):
                if job_id is not None and jid != job_id:
                    continue
                res = rec.get("resource", {})
                parts = str(res.get("name", "")).split("/")
                project = parts[1] if len(parts) > 1 else ""
                if projects and project not in projects:
                    continue
                if collection == "customJobs":
                    yield _Source(project, jid, None, self.store.run_dir(jid),
                                  res.get("state") in _ENDED)
                    continue
                job_ended = res.get("state") in _ENDED
                for t in res.get("trials") or []:
                    tid = str(t.get("id", ""))
                    try:
                        directory = self.store.run_dir(jid, tid)
                    except Exception:
                        continue
                    yield _Source(project, jid, tid, directory,
                                  job_ended or t.get("state") in _ENDED)

    def _entries(self, source: _Source) -> Iterator[tuple[str, int, dict[str, Any]]]:
        for index, (stream, severity) in enumerate(_STREAMS):
            path = source.directory / f"{stream}.log"
            got = _read(path)
            if got is None:
                continue
            data, mtime = got
            parts = self.stamps.of(path, len(data), mtime)
            offset = 0
            part = 0
            for raw in data.splitlines(keepends=True):
                start, offset = offset, offset + len(raw)
                if not raw.endswith(b"\n") and not source.ended:
                    break  # still being written
                while part < len(parts) - 1 and parts[part][0] <= start:
                    part += 1
                stamp = parts[part][1]
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                labels = {"job_id": source.job_id, "project_id": source.project,
                          "task_name": LOG_ID}
                entry: dict[str, Any] = {
                    "logName": f"projects/{source.project}/logs/{LOG_ID}",
                    "resource": {"type": RESOURCE_TYPE, "labels": labels},
                    "timestamp": stamp,
                    "receiveTimestamp": stamp,
                    "severity": severity,
                    "insertId": f"{source.trial_id or 'job'}-{stream}-{start}",
                    "textPayload": text,
                }
                if source.trial_id is not None:
                    entry["labels"] = {"trial_id": source.trial_id}
                yield stamp, index * (1 << 48) + start, entry

    def list_entries(self, request: Request) -> Answer:
        body = json_body(request.body)
        names = body.get("resourceNames") or []
        projects = set()
        for name in names:
            m = re.match(r"^projects/([^/]+)$", str(name))
            if m is None:
                raise ApiError(
                    400, f"resource_names: {name!r} is not projects/PROJECT (the emulator keeps "
                    "only projects' logs)"
                )
            projects.add(m.group(1))
        tree = parse_filter(str(body.get("filter") or ""))
        order = str(body.get("orderBy") or "timestamp asc").strip().lower()
        if order not in ("timestamp asc", "timestamp desc"):
            raise ApiError(400, f"order_by {order!r}: 'timestamp asc' or 'timestamp desc'")
        try:
            size = int(body.get("pageSize") or DEFAULT_PAGE_SIZE)
            start = int(body.get("pageToken") or 0)
        except (TypeError, ValueError):
            raise ApiError(400, "page_size and page_token must be integers") from None
        if not 0 < size <= MAX_PAGE_SIZE:
            raise ApiError(400, f"page_size must be 1-{MAX_PAGE_SIZE}, got {size}")
        job_id = required(tree, ("resource", "labels", "job_id"))
        found = [
            item
            for source in self._sources(projects, job_id)
            for item in self._entries(source)
            if matches(tree, item[2])
        ]
        found.sort(key=lambda item: (item[0], item[1]), reverse=order.endswith("desc"))
        page = [item[2] for item in found[start : start + size]]
        out: dict[str, Any] = {"entries": page}
        if start + size < len(found):
            out["nextPageToken"] = str(start + size)
        return 200, out
