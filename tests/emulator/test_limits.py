"""Security before work (issue 15): a request is judged on its headers before its body is read;
Content-Length is checked first; idle, half-open and slow connections end; connections are capped;
the gRPC front has limits too; a bad seed label is a 400.

Raw sockets, because the point is what the server does with bytes a client library never sends.
Every wait has a generous deadline (a missed one fails the test; nothing waits on a fixed sleep).
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from _helpers import IMAGE

from hydra_vertex.emulator import EmulatorHandle, start
from hydra_vertex.emulator.limits import Limits

PARENT = "/v1/projects/test-project/locations/us-central1"
UPLOAD = "/upload/storage/v1/b/bucket/o?uploadType=media&name=x"
DEADLINE = 60.0  # seconds a test waits for the server before it calls the server stuck
BRANIN = Path(__file__).parent / "apps" / "branin"


def _port(handle: EmulatorHandle) -> int:
    return int(urlsplit(handle.endpoint).port or 0)


def _connect(handle: EmulatorHandle) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(handle)), timeout=DEADLINE)
    return sock


def _head(handle: EmulatorHandle, method: str, path: str, *lines: str, token: bool = True) -> bytes:
    auth = [f"Authorization: Bearer {handle.token}"] if token else []
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{_port(handle)}", *auth, *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (a timeout fails the test)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _response(data: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[EmulatorHandle]:
    """An emulator whose deadlines are short enough to watch them pass."""
    limits = Limits(header_timeout=1.0, body_grace=0.5, body_min_rate=1000)
    handle = start(tmp_path / "state", images={IMAGE: str(BRANIN)}, grpc_port=None, limits=limits)
    try:
        yield handle
    finally:
        handle.stop()


# -- judged on the headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "lines", "token", "status"),
    [
        pytest.param(UPLOAD, [], False, 401, id="upload-without-token"),
        pytest.param(f"{PARENT}/customJobs", [], False, 401, id="api-without-token"),
        pytest.param(UPLOAD, ["Origin: http://evil.example"], True, 403, id="foreign-origin"),
        pytest.param(f"{PARENT}/nothing", [], False, 401, id="unknown-route-without-token"),
    ],
)
def test_refused_on_the_headers_before_the_body_is_read(
    emulator: EmulatorHandle, path: str, lines: list[str], token: bool, status: int
) -> None:
    """300 MiB declared, none sent: the answer comes at once and the connection closes (before,
    the server sat reading the body, and an attacker who sent it made it hold the bytes)."""
    with _connect(emulator) as sock:
        size = 300 * 1024 * 1024
        sock.sendall(_head(emulator, "POST", path, f"Content-Length: {size}", *lines, token=token))
        got, body = _response(_read_all(sock))
    assert got == status, body
    assert body["error"]["code"] == status


def test_foreign_host_refused_before_the_body(emulator: EmulatorHandle) -> None:
    with _connect(emulator) as sock:
        head = _head(emulator, "POST", UPLOAD, "Content-Length: 1000000")
        sock.sendall(head.replace(b"Host: 127.0.0.1", b"Host: evil.example", 1))
        got, body = _response(_read_all(sock))
    assert got == 403 and body["error"]["status"] == "PERMISSION_DENIED"


def test_a_refused_body_is_never_buffered(emulator: EmulatorHandle) -> None:
    """An unauthenticated client that streams its body anyway is cut off: the server closes the
    connection after its 401 instead of draining, so the client cannot get rid of 64 MiB."""
    with _connect(emulator) as sock:
        sock.sendall(_head(emulator, "POST", UPLOAD, "Content-Length: 67108864", token=False))
        chunk, sent = b"\0" * 65536, 0
        with pytest.raises(OSError):  # reset (or broken pipe) once the server has closed
            while sent < 64 * 1024 * 1024:
                sent += sock.send(chunk)
    assert sent < 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("value", "status", "needle"),
    [
        pytest.param("abc", 400, "invalid Content-Length 'abc'", id="not-a-number"),
        pytest.param("-1", 400, "invalid Content-Length '-1'", id="negative"),
        pytest.param("+5", 400, "invalid Content-Length '+5'", id="signed"),
        pytest.param("1" * 4400, 413, "exceeds the limit", id="4400-digits"),
        pytest.param(str(4 * 1024 * 1024 + 1), 413, "exceeds the limit", id="over-the-limit"),
    ],
)
def test_content_length_is_checked_before_reading(
    emulator: EmulatorHandle, value: str, status: int, needle: str
) -> None:
    with _connect(emulator) as sock:
        sock.sendall(_head(emulator, "POST", f"{PARENT}/customJobs", f"Content-Length: {value}"))
        got, body = _response(_read_all(sock))
    assert got == status
    assert needle in body["error"]["message"]


def test_two_different_content_lengths_are_refused(emulator: EmulatorHandle) -> None:
    with _connect(emulator) as sock:
        lines = ["Content-Length: 2", "Content-Length: 3"]
        sock.sendall(_head(emulator, "POST", f"{PARENT}/customJobs", *lines) + b"{}")
        got, body = _response(_read_all(sock))
    assert got == 400 and "Content-Length" in body["error"]["message"]


def test_expect_100_continue_only_after_the_checks(emulator: EmulatorHandle) -> None:
    expect = ["Content-Length: 2", "Expect: 100-continue"]
    with _connect(emulator) as sock:  # refused: no invitation to send the body
        sock.sendall(_head(emulator, "POST", f"{PARENT}/customJobs", *expect, token=False))
        data = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 401")
    with _connect(emulator) as sock:  # accepted: "100 Continue", then the answer to the body
        sock.sendall(_head(emulator, "POST", f"{PARENT}/customJobs", *expect, "Connection: close"))
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        got, body = _response(_read_all(sock))
    assert got == 400 and "display_name is required" in body["error"]["message"]


def test_oversized_headers_are_431(emulator: EmulatorHandle) -> None:
    lines = [f"X-Filler-{i}: {'a' * 8000}" for i in range(12)]
    with _connect(emulator) as sock:
        sock.sendall(_head(emulator, "GET", f"{PARENT}/customJobs", *lines))
        got, body = _response(_read_all(sock))
    assert got == 431 and "larger than" in body["error"]["message"]


# -- idle, half-open and slow connections ---------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="idle"),
        pytest.param(b"GET /v1/projects/p/locations/l/customJobs HTTP/1.1\r\nHost: 12", id="half-open"),
    ],
)
def test_idle_and_half_open_connections_are_closed(limited: EmulatorHandle, sent: bytes) -> None:
    """Before: 300 such connections held 303 threads after 40 s. Now: closed after the header
    deadline (1 s here, 10 s by default) without an answer."""
    with _connect(limited) as sock:
        sock.sendall(sent)
        assert _read_all(sock) == b""


def test_a_keep_alive_connection_is_closed_when_idle(limited: EmulatorHandle) -> None:
    with _connect(limited) as sock:
        sock.sendall(_head(limited, "GET", f"{PARENT}/customJobs"))
        data = sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(body) < length:  # the body may come in a later segment
            body += sock.recv(65536)
        assert _read_all(sock) == b""  # no second request within the deadline: closed


def test_a_slow_body_is_408(limited: EmulatorHandle) -> None:
    """After the grace (0.5 s here) the body must arrive at the minimum rate (1000 B/s here)."""
    with _connect(limited) as sock:
        sock.sendall(_head(limited, "POST", f"{PARENT}/customJobs", "Content-Length: 100000"))
        sock.sendall(b'{"displayName": ')  # then nothing more
        got, body = _response(_read_all(sock))
    assert got == 408
    assert "slower than 1000 bytes/s" in body["error"]["message"]


def test_connections_beyond_the_cap_wait_in_the_backlog(tmp_path: Path) -> None:
    """Two slots: while two connections hold them, a third is not served; when one goes, it is."""
    limits = Limits(max_connections=2, header_timeout=DEADLINE)
    with start(tmp_path / "state", grpc_port=None, limits=limits) as handle:
        first, second = _connect(handle), _connect(handle)
        first.sendall(_head(handle, "GET", f"{PARENT}/customJobs"))  # both served once:
        second.sendall(_head(handle, "GET", f"{PARENT}/customJobs"))  # they hold their slots
        assert first.recv(65536).startswith(b"HTTP/1.1 200")
        assert second.recv(65536).startswith(b"HTTP/1.1 200")
        with _connect(handle) as third:
            third.sendall(_head(handle, "GET", f"{PARENT}/customJobs", "Connection: close"))
            readable, _, _ = select.select([third], [], [], 1.0)
            assert readable == []  # accepted by the kernel, not by the server: no thread, no answer
            first.close()
            got, _ = _response(_read_all(third))
            assert got == 200
        second.close()


# -- the seed label -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "status"),
    [
        pytest.param("abc", 400, id="not-a-number"),
        pytest.param("1" * 4300, 400, id="4300-digits"),
        pytest.param("-3", 400, id="negative"),
        pytest.param("42", 200, id="a-seed"),
    ],
)
def test_the_seed_label_is_a_whole_number(emulator: EmulatorHandle, seed: str, status: int) -> None:
    body = json.dumps(
        {
            "displayName": "seeded",
            "labels": {"hydra-vertex-seed": seed},
            "jobSpec": {
                "workerPoolSpecs": [
                    {
                        "machineSpec": {"machineType": "n1-standard-4"},
                        "replicaCount": "1",
                        "containerSpec": {"imageUri": IMAGE, "command": ["true"]},
                    }
                ]
            },
        }
    ).encode()
    with _connect(emulator) as sock:
        lines = [f"Content-Length: {len(body)}", "Connection: close"]
        sock.sendall(_head(emulator, "POST", f"{PARENT}/customJobs", *lines) + body)
        got, answer = _response(_read_all(sock))
    assert got == status, answer
    if status == 400:
        assert "hydra-vertex-seed" in answer["error"]["message"]
        assert len(answer["error"]["message"]) < 300


# -- gRPC -----------------------------------------------------------------------------------------


def test_grpc_refuses_oversized_and_unauthenticated_messages(emulator: EmulatorHandle) -> None:
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1
    from test_grpc import _client

    big = aiplatform_v1.CustomJob(display_name="x" * (5 * 1024 * 1024))
    parent = "projects/test-project/locations/us-central1"
    with pytest.raises(exceptions.ResourceExhausted):
        _client("JobService", emulator).create_custom_job(parent=parent, custom_job=big)
    with pytest.raises(exceptions.Unauthenticated, match="bearer token"):
        small = aiplatform_v1.CustomJob(display_name="x" * 1024 * 1024)
        _client("JobService", emulator, token="wrong").create_custom_job(
            parent=parent, custom_job=small
        )
