"""List filters in the grammar of AIP-160 (https://google.aip.dev/160), as Vertex AI reads them.

A small recursive-descent parser over the text (no separate lexer: unquoted values such as
``2021-05-18T00:00:00Z`` or ``projects/1/locations/l/schedules/2`` hold ``:``, ``-`` and ``/``)::

    expression  := sequence { "AND" sequence }
    sequence    := factor { factor }                 (juxtaposition is AND as well)
    factor      := term { "OR" term }                (OR binds tighter than AND, as in AIP-160)
    term        := [ "NOT" | "-" ] simple
    simple      := "(" expression ")" | restriction
    restriction := field comparator value            (= != < <= > >= :)
    field       := name { "." name }                 (snake_case or camelCase)
    value       := "quoted" | 'quoted' | * | unquoted text up to a space or ")"

The fields each collection answers to are those its ``List*Request.filter`` documents (plus
``update_time`` everywhere and ``schedule_name`` on pipeline jobs, which the SDK's
``PipelineJobSchedule.list_jobs()`` sends unquoted); each has a kind that says which comparators
fit: strings take ``=``, ``!=`` and ``:`` (``*`` wildcards; ``:*`` is presence), states ``=``/``!=``
(a name of the collection's state enum), times all six (RFC 3339), labels ``labels.KEY`` with
``=``/``!=``/``:`` (``labels.KEY:*`` is presence; ``labels:KEY`` too). Anything else -- an unknown
field, a comparator the field does not take, a bad value, a term without a comparator, stray text
-- is a :class:`FilterError` whose message names the filter, the position and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from hydra_vertex.errors import HydraVertexError

Predicate = Callable[[dict[str, Any]], bool]

STRING, STATE, TIME, LABELS, PRESENCE = "string", "state", "time", "labels", "presence"
_COMPARATORS = ("<=", ">=", "!=", "=", "<", ">", ":")
_ALLOWED = {
    STRING: ("=", "!=", ":"),
    STATE: ("=", "!="),
    TIME: ("=", "!=", "<", "<=", ">", ">=", ":"),
    LABELS: ("=", "!=", ":"),
    PRESENCE: (":",),
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_KEYWORDS = ("AND", "OR", "NOT")

# field (snake_case) -> (kind, path in the stored proto-JSON resource)
_JOB_FIELDS: dict[str, tuple[str, str]] = {
    "display_name": (STRING, "displayName"),
    "state": (STATE, "state"),
    "create_time": (TIME, "createTime"),
    "update_time": (TIME, "updateTime"),
    "start_time": (TIME, "startTime"),
    "end_time": (TIME, "endTime"),
    "labels": (LABELS, "labels"),
}
FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "customJobs": _JOB_FIELDS,
    "hyperparameterTuningJobs": _JOB_FIELDS,
    "pipelineJobs": {
        **_JOB_FIELDS,
        "schedule_name": (STRING, "scheduleName"),
        "pipeline_name": (STRING, "pipelineSpec.pipelineInfo.name"),
        "pipeline_job_user_id": (STRING, "name"),
        "template_uri": (STRING, "templateUri"),
        "template_metadata.version": (STRING, "templateMetadata.version"),
    },
    "schedules": {  # a schedule has no labels
        **{k: v for k, v in _JOB_FIELDS.items() if k != "labels"},
        "next_run_time": (TIME, "nextRunTime"),
        "create_pipeline_job_request": (PRESENCE, "createPipelineJobRequest"),
    },
}


class FilterError(HydraVertexError):
    """A filter this grammar does not accept (answered 400)."""


def compile_filter(text: str, collection: str, states: tuple[str, ...] = ()) -> Predicate:
    """A predicate over stored resources of ``collection`` (an empty filter keeps all).
    ``states``: the names the ``state`` field may take (checked when given)."""
    if not text.strip():
        return lambda _resource: True
    return _Parser(text, FIELDS[collection], states).parse()


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _lookup(resource: dict[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


class _Parser:
    def __init__(self, text: str, fields: dict[str, tuple[str, str]], states: tuple[str, ...]):
        self.text = text
        self.pos = 0
        self.fields = fields
        self.states = states

    # -- errors ----------------------------------------------------------------------------------
    def error(self, message: str, pos: int | None = None) -> FilterError:
        at = self.pos if pos is None else pos
        fields = ", ".join(
            f"{f}.KEY" if kind == LABELS else f for f, (kind, _) in self.fields.items()
        )
        return FilterError(
            f"invalid filter {self.text!r} at position {at}: {message} (AIP-160 grammar; "
            f"fields here: {fields}; see docs/emulator.md)"
        )

    # -- scanning --------------------------------------------------------------------------------
    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    def keyword(self, word: str) -> bool:
        self.skip()
        end = self.pos + len(word)
        if self.text.startswith(word, self.pos) and (
            end >= len(self.text) or self.text[end].isspace() or self.text[end] == "("
        ):
            self.pos = end
            return True
        return False

    def peek_keyword(self) -> bool:
        save = self.pos
        found = any(self.keyword(k) for k in ("AND", "OR"))
        self.pos = save
        return found

    # -- grammar ---------------------------------------------------------------------------------
    def parse(self) -> Predicate:
        predicate = self.expression()
        if not self.at_end():
            raise self.error(f"unexpected {self.text[self.pos:]!r}")
        return predicate

    def expression(self) -> Predicate:
        parts = [self.sequence()]
        while self.keyword("AND"):
            parts.append(self.sequence())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def sequence(self) -> Predicate:
        parts = [self.factor()]
        while not self.at_end() and self.text[self.pos] != ")" and not self.peek_keyword():
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def factor(self) -> Predicate:
        parts = [self.term()]
        while self.keyword("OR"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def term(self) -> Predicate:
        self.skip()
        negate = self.keyword("NOT")
        if not negate and self.text.startswith("-", self.pos):
            self.pos += 1
            negate = True
        inner = self.simple()
        return (lambda r: not inner(r)) if negate else inner

    def simple(self) -> Predicate:
        self.skip()
        if self.pos >= len(self.text):
            raise self.error("expected a restriction (field comparator value), got the end")
        if self.text[self.pos] == "(":
            self.pos += 1
            inner = self.expression()
            self.skip()
            if not self.text.startswith(")", self.pos):
                raise self.error("expected ')'")
            self.pos += 1
            return inner
        return self.restriction()

    def restriction(self) -> Predicate:
        start = self.pos
        field = self.field()
        self.skip()
        comparator = next((c for c in _COMPARATORS if self.text.startswith(c, self.pos)), None)
        if comparator is None:
            raise self.error(
                f"{field!r} needs a comparator (=, !=, <, <=, >, >=, :); bare values are not "
                "searched"
            )
        self.pos += len(comparator)
        self.skip()
        value_pos = self.pos
        value = self.value()
        return self.build(field, comparator, value, start, value_pos)

    def field(self) -> str:
        m = _NAME.match(self.text, self.pos)
        if m is None:
            raise self.error(f"expected a field name, got {self.text[self.pos:self.pos + 20]!r}")
        parts = [m.group(0)]
        self.pos = m.end()
        while self.text.startswith(".", self.pos):
            pattern = _LABEL_KEY if _snake(parts[0]) == "labels" else _NAME
            m = pattern.match(self.text, self.pos + 1)
            if m is None:
                raise self.error("expected a name after '.'", self.pos + 1)
            parts.append(m.group(0))
            self.pos = m.end()
        if parts[0] in _KEYWORDS:
            raise self.error(f"expected a restriction, got the keyword {parts[0]}")
        return ".".join(parts)

    def value(self) -> str:
        if self.pos >= len(self.text):
            raise self.error("expected a value, got the end")
        quote = self.text[self.pos]
        if quote in "\"'":
            out, i = [], self.pos + 1
            while i < len(self.text) and self.text[i] != quote:
                if self.text[i] == "\\" and i + 1 < len(self.text):
                    i += 1
                out.append(self.text[i])
                i += 1
            if i >= len(self.text):
                raise self.error("unterminated quoted value")
            self.pos = i + 1
            return "".join(out)
        m = re.compile(r"[^\s()]+").match(self.text, self.pos)
        if m is None:
            raise self.error(f"expected a value, got {self.text[self.pos]!r}")
        self.pos = m.end()
        return m.group(0)

    # -- meaning ---------------------------------------------------------------------------------
    def build(self, field: str, comparator: str, value: str, start: int, vpos: int) -> Predicate:
        name = ".".join(_snake(p) if i == 0 else p for i, p in enumerate(field.split(".")))
        head, _, key = name.partition(".")
        if head == "labels" and "labels" in self.fields:
            return self.labels(key, comparator, value, start)
        known = self.fields.get(_snake(name)) or self.fields.get(name)
        if known is None:
            raise self.error(f"unknown field {field!r}", start)
        kind, path = known
        if comparator not in _ALLOWED[kind]:
            raise self.error(
                f"{field} takes {', '.join(_ALLOWED[kind])}, not {comparator!r}", start
            )
        if comparator == ":" and value == "*":
            return lambda r: bool(_lookup(r, path))
        if kind == PRESENCE:
            raise self.error(f"{field} only takes ':*' (presence)", vpos)
        if kind == STATE:
            if self.states and value not in self.states:
                raise self.error(
                    f"{value!r} is not a state here ({', '.join(self.states)})", vpos
                )
            return _compare_text(path, comparator, value)
        if kind == TIME:
            try:
                wanted = _time(value)
                if wanted.tzinfo is None:
                    raise ValueError(value)
            except ValueError:
                raise self.error(
                    f"{field} needs an RFC 3339 time (2021-05-18T00:00:00Z), got {value!r}", vpos
                ) from None
            return _compare_time(path, comparator, wanted)
        if path == "name":  # pipeline_job_user_id: the last segment of the name
            return _compare_text(path, comparator, value, last_segment=True)
        return _compare_text(path, comparator, value)

    def labels(self, key: str, comparator: str, value: str, start: int) -> Predicate:
        if not key:
            if comparator != ":":
                raise self.error("labels takes ':' (labels:KEY) or labels.KEY", start)
            return lambda r: value in (r.get("labels") or {})
        if comparator not in _ALLOWED[LABELS]:
            raise self.error(f"labels.{key} takes =, != and :, not {comparator!r}", start)
        if comparator == ":" and value == "*":
            return lambda r: key in (r.get("labels") or {})

        def match(r: dict[str, Any]) -> bool:
            got = (r.get("labels") or {}).get(key)
            if comparator == "!=":
                return got != value
            if comparator == ":":
                return got is not None and _glob(got, value)
            return got == value

        return match


def _glob(text: str, pattern: str) -> bool:
    """``*`` matches any run of characters; nothing else is special."""
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), text) is not None


def _compare_text(path: str, comparator: str, value: str, last_segment: bool = False) -> Predicate:
    def match(r: dict[str, Any]) -> bool:
        got = _lookup(r, path)
        if isinstance(got, str) and last_segment:
            got = got.rsplit("/", 1)[-1]
        if comparator == "!=":
            return got != value
        if comparator == ":":
            return isinstance(got, str) and _glob(got, value)
        return got == value

    return match


def _compare_time(path: str, comparator: str, wanted: datetime) -> Predicate:
    ops: dict[str, Callable[[datetime, datetime], bool]] = {
        "=": lambda a, b: a == b,
        ":": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    op = ops[comparator]

    def match(r: dict[str, Any]) -> bool:
        got = _lookup(r, path)
        if not isinstance(got, str) or not got:
            return comparator == "!="
        try:
            return op(_time(got), wanted)
        except ValueError:
            return False

    return match
