"""Extra services the emulator answers besides the v1 job routes (Cloud Storage JSON API, Cloud
Build, the console page, ...). Each is a small object with ``route(method, path)``; the server
asks them in order before its own routes table. Security checks (Host, Origin, token) run first
for every request, whatever service answers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Raw:
    """A non-JSON answer (an object download, an HTML page)."""

    body: bytes
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)


# A handler gets the request and answers (status, JSON-able dict or Raw).
Handler = Callable[..., tuple[int, "dict[str, Any] | Raw"]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Any
    body: bytes


class Service(Protocol):
    def route(self, method: str, path: str) -> Callable[[Request], tuple[int, Any]] | None:
        """The handler for this request, or None when the service does not serve the path."""
        ...
