"""HTTP connections under the emulator's ``Limits``: how many, how slow, how big.

The standard library's ``ThreadingHTTPServer`` starts a thread per connection and waits on each
socket forever. Two small pieces bound it, and keep the in-process ``start()``/``stop()``:

- :class:`CappedServer` accepts a connection only when one of ``max_connections`` slots is free
  (a bounded semaphore taken before ``accept``); the others wait in the kernel's listen backlog,
  so a flood of idle connections costs at most ``max_connections`` threads.
- :class:`DeadlineReader` is the socket under the handler's ``rfile``: every read is bounded by
  the deadline of the current phase. Headers: ``header_timeout`` from the moment the server waits
  for a request (idle keep-alive included) and at most ``max_header_bytes``; body: the grace,
  then the minimum rate (byte ``n`` is due ``grace + n / rate`` seconds after the headers). A
  missed deadline raises ``TimeoutError``; too many header bytes, :class:`HeadersTooLarge`.

uvicorn (h11) was the alternative: it caps concurrency (503 beyond) and header size, but has no
deadline for a request's headers or body (encode/uvicorn#157 is open; its ``timeout_keep_alive``
is reset by every byte received, so a client trickling bytes holds a connection forever). Those
deadlines would be written by hand there too, and the synchronous handlers (fsync'd store writes,
process starts) would sit behind a thread pool anyway.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from hydra_vertex.emulator.limits import Limits

log = logging.getLogger("hydra_vertex.emulator")


class HeadersTooLarge(Exception):
    """The request line and headers went past ``Limits.max_header_bytes``."""


class DeadlineReader(io.RawIOBase):
    """A connected socket as a raw stream whose reads are bounded by the current phase."""

    def __init__(self, sock: socket.socket, limits: Limits) -> None:
        self.sock = sock
        self.limits = limits
        self._body = False
        self._start = time.monotonic()
        self.received = 0  # bytes of the current phase

    def expect_headers(self) -> None:
        """The next bytes are a request line and headers (or nothing: an idle connection)."""
        self._body, self._start, self.received = False, time.monotonic(), 0

    def expect_body(self) -> None:
        """The headers are in; what follows is the body, due at the minimum rate."""
        self._body, self._start, self.received = True, time.monotonic(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._body:
            due = self._start + self.limits.transfer_seconds(self.received)
            late = f"the request body arrived slower than {self.limits.body_min_rate} bytes/s"
        else:
            if self.received >= self.limits.max_header_bytes:
                raise HeadersTooLarge(
                    f"request headers larger than {self.limits.max_header_bytes} bytes"
                )
            due = self._start + self.limits.header_timeout
            late = f"no complete request headers within {self.limits.header_timeout:g} s"
        left = due - time.monotonic()
        if left <= 0:
            raise TimeoutError(late)
        self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(buffer)
        except TimeoutError:
            raise TimeoutError(late) from None
        self.received += n
        return n


class CappedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``limits.max_connections`` of them at once."""

    daemon_threads = True
    # Connections beyond the cap wait here (the kernel also caps it, at net.core.somaxconn).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: Any, limits: Limits) -> None:
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._closing = threading.Event()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept only with a free slot; until then the connection stays in the backlog."""
        while not self._slots.acquire(timeout=0.5):
            if self._closing.is_set():
                raise OSError("the server is shutting down")
        try:
            return super().get_request()
        except BaseException:
            self._slots.release()
            raise

    def close_request(self, request: Any) -> None:
        """Every accepted connection ends here once (served, refused or failed): its slot frees."""
        try:
            super().close_request(request)
        finally:
            self._slots.release()

    def shutdown(self) -> None:
        self._closing.set()
        super().shutdown()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection the client broke (reset, timeout) is routine; anything else is logged
        once, with its traceback (the server's own bug)."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("connection from %s ended: %s", client_address, error)
        else:
            log.exception("internal error on a connection from %s", client_address)
