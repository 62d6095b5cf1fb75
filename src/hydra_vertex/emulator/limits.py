"""What one client may take from the emulator: connections, time and bytes, on both fronts.

The HTTP server (``server.py``) and the gRPC server (``grpc_server.py``) read their limits from one
:class:`Limits`; ``start(..., limits=Limits(...))`` sets them (tests shorten the timeouts).
Defaults and why:

- ``max_connections`` (256): HTTP connections served at once, each by one thread (~20 KiB of
  memory while it waits, plus at most ``max_header_bytes`` of headers). Further connections wait
  in the listen backlog until one ends; nothing is refused.
- ``header_timeout`` (10 s): a request's line and headers must arrive within it, counted from the
  moment the server waits for them, so an idle keep-alive connection is closed after it too.
- ``body_grace`` + ``body_min_rate`` (10 s, then 64 KiB/s): the body must keep up with the rate
  once the grace has passed (byte ``n`` is due ``grace + n / rate`` seconds after the headers);
  a slower body is 408 and the connection is closed. Responses are written under the same rule.
- ``max_header_bytes`` (64 KiB): the request line and headers together; more is 431.
- ``max_body_bytes`` (4 MiB; uploads under ``/upload/``: 512 MiB) -> 413 before anything is read.
- gRPC: messages up to ``grpc_max_message_bytes`` (4 MiB, as REST bodies; more is
  ``RESOURCE_EXHAUSTED``), ``grpc_max_concurrent_rpcs`` (64) calls at once (more are
  ``RESOURCE_EXHAUSTED``), a TLS handshake within ``grpc_handshake_timeout`` (10 s), idle
  connections closed after ``grpc_idle_timeout`` (5 min).
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    body_grace: float = 10.0
    body_min_rate: int = 64 * 1024  # bytes per second
    max_body_bytes: int = 4 * MiB
    max_upload_bytes: int = 512 * MiB  # Cloud Storage uploads (/upload/...): source tarballs
    grpc_max_message_bytes: int = 4 * MiB
    grpc_max_concurrent_rpcs: int = 64
    grpc_handshake_timeout: float = 10.0
    grpc_idle_timeout: float = 300.0

    def body_limit(self, path: str) -> int:
        """The largest request body accepted on ``path``."""
        return self.max_upload_bytes if path.startswith("/upload/") else self.max_body_bytes

    def transfer_seconds(self, size: int) -> float:
        """How long ``size`` bytes may take to arrive (or to be sent): the grace, then the rate."""
        return self.body_grace + size / self.body_min_rate


DEFAULT = Limits()
