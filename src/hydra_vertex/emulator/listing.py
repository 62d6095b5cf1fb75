"""One page of a Vertex AI list: ``filter`` (AIP-160, :mod:`filters`), ``orderBy``, ``readMask``,
``pageSize`` and ``pageToken``, as the REST clients send them (camelCase query parameters; the
snake_case spellings are accepted too).

- ``orderBy``: ``field [desc], ...`` over ``create_time``, ``update_time``, ``display_name``,
  ``start_time``, ``end_time`` (and ``next_run_time`` for schedules); the default is
  ``create_time desc`` (what Vertex documents); ties keep the resource name's order.
- ``readMask``: the listed field paths of each resource, checked against the resource's proto
  type (an unknown path is 400); absent, the whole resource.
- ``pageSize``: 0 or absent is the default (100), above 1000 is 1000, negative is 400.
- ``pageToken``: opaque (base64 of the offset and a digest of the query it belongs to); a token
  that does not decode, or that came from a different filter/order/mask/parent, is 400.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from hydra_vertex.emulator.filters import FilterError, compile_filter
from hydra_vertex.emulator.router import ApiError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_ORDER_FIELDS = {
    "create_time": "createTime",
    "update_time": "updateTime",
    "display_name": "displayName",
    "start_time": "startTime",
    "end_time": "endTime",
}
_SCHEDULE_ORDER_FIELDS = {**_ORDER_FIELDS, "next_run_time": "nextRunTime"}
_EPOCH = datetime.min.replace(tzinfo=UTC)
_ANY = object()  # inside a Struct or a map: any key
_OPAQUE = ("google.protobuf.Struct", "google.protobuf.Value")


def param(query: Mapping[str, str], camel: str) -> str:
    """A query parameter under its camelCase or snake_case name."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return query.get(camel) or query.get(snake) or ""


def state_names(collection: str) -> tuple[str, ...]:
    """The names the ``state`` of a resource of ``collection`` can take (its proto enum)."""
    from google.cloud.aiplatform_v1 import types

    enum: Any = {
        "pipelineJobs": types.PipelineState,
        "schedules": types.Schedule.State,
    }.get(collection, types.JobState)
    return tuple(e.name for e in enum)


def page(
    collection: str,
    message_type: str,
    parent: str,
    items: list[dict[str, Any]],
    query: Mapping[str, str],
    render: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """The list response body (``{collection: [...], "nextPageToken": ...}``)."""
    text = param(query, "filter")
    try:
        keep = compile_filter(text, collection, state_names(collection))
    except FilterError as e:
        raise ApiError(400, str(e)) from None
    order = param(query, "orderBy")
    mask = _mask_paths(param(query, "readMask"), message_type)
    chosen = _sorted([r for r in items if keep(r)], order, collection)
    window, next_token = paginate(len(chosen), query, [collection, parent, text, order, mask])
    out: dict[str, Any] = {collection: [_masked(render(r), mask) for r in chosen[window]]}
    if next_token:
        out["nextPageToken"] = next_token
    return out


def paginate(total: int, query: Mapping[str, str], identity: list[Any]) -> tuple[slice, str]:
    """The slice of ``total`` items this page shows and the next page's token ("" at the end).
    ``identity``: what a token must have been issued for (the list's parent and query)."""
    size = _page_size(param(query, "pageSize"))
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    start = _offset(param(query, "pageToken"), key)
    if start + size >= total:
        return slice(start, total), ""
    token = json.dumps({"o": start + size, "k": key}, separators=(",", ":"))
    return slice(start, start + size), base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def _page_size(text: str) -> int:
    try:
        size = int(text or 0)
    except ValueError:
        raise ApiError(400, f"page_size must be an integer, got {text!r}") from None
    if size < 0:
        raise ApiError(400, f"page_size must be >= 0 (0 is the default, 100), got {size}")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _offset(token: str, key: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, token_key = int(data["o"]), str(data["k"])
    except (ValueError, TypeError, KeyError):
        raise ApiError(
            400, f"page_token {token!r} is not a page token of this emulator (list again "
            "without page_token)"
        ) from None
    if token_key != key or offset < 0:
        raise ApiError(
            400, f"page_token {token!r} belongs to another query: filter, order_by, read_mask "
            "and parent must stay the same across pages"
        )
    return offset


def _sorted(items: list[dict[str, Any]], order: str, collection: str) -> list[dict[str, Any]]:
    fields = _SCHEDULE_ORDER_FIELDS if collection == "schedules" else _ORDER_FIELDS
    keys: list[tuple[str, bool]] = []
    for part in (p.strip() for p in order.split(",")):
        if not part and order.strip():
            raise ApiError(400, f"order_by {order!r}: an empty field")
        if not part:
            continue
        words = part.split()
        name = "".join("_" + c.lower() if c.isupper() else c for c in words[0])
        if name not in fields or len(words) > 2 or (len(words) == 2 and words[1] not in (
            "desc", "asc"
        )):
            raise ApiError(
                400,
                f"order_by {order!r}: {part!r} is not 'field [desc]' with a field of "
                f"{sorted(fields)}",
            )
        keys.append((fields[name], len(words) == 2 and words[1] == "desc"))
    if not keys:
        keys = [("createTime", True)]
    out = sorted(items, key=lambda r: str(r.get("name", "")))
    for path, desc in reversed(keys):  # stable sorts, last key first
        out.sort(key=partial(_sort_value, path), reverse=desc)
    return out


def _sort_value(path: str, resource: dict[str, Any]) -> tuple[int, Any]:
    value = resource.get(path)
    if isinstance(value, str) and value[:4].isdigit() and "T" in value:
        try:
            return (1, datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    if value is None or value == "":
        return (0, _EPOCH)
    return (2, str(value))


def _mask_paths(text: str, message_type: str) -> list[list[str]]:
    """The read mask's paths (camelCase segments), each checked against the proto type."""
    if not text.strip():
        return []
    from google.cloud.aiplatform_v1 import types

    descriptor = getattr(types, message_type).meta.pb.DESCRIPTOR
    out = []
    for path in (p.strip() for p in text.split(",")):
        segments: list[str] = []
        current: Any = descriptor  # a message descriptor, _ANY (Struct/map) or None (scalar)
        for segment in path.split("."):
            if current is _ANY:
                segments.append(segment)
                continue
            field = None
            if current is not None:
                field = current.fields_by_name.get(_snake(segment))
                field = field or current.fields_by_camelcase_name.get(segment)
            if field is None:
                raise ApiError(400, f"read_mask: {path!r} is not a field path of {message_type}")
            segments.append(field.json_name)
            sub = field.message_type
            if sub is None:
                current = None
            elif sub.full_name in _OPAQUE or sub.GetOptions().map_entry:
                current = _ANY
            else:
                current = sub
        out.append(segments)
    return out


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _masked(resource: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    if not paths:
        return resource
    out: dict[str, Any] = {}
    for path in paths:
        src: Any = resource
        for segment in path:
            if not isinstance(src, dict) or segment not in src:
                break
            src = src[segment]
        else:
            dst = out
            for segment in path[:-1]:
                dst = dst.setdefault(segment, {})
            dst[path[-1]] = src
    return out
