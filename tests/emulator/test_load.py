"""Load under attack (issue 15's acceptance): legitimate clients through the real client library
keep working while attackers hold half-open connections, stream oversized bodies without a token,
send over-limit bodies with one and trickle slow bodies; the emulator's memory stays bounded.

The emulator runs as a ``hydra-vertex emulator`` process (its RSS and threads are read from
/proc). Sizes come from the environment, so the issue's full run is one command::

    HYDRA_VERTEX_LOAD_SECONDS=60 pytest tests/emulator/test_load.py -s

Defaults: 60 clients, 300 half-open connections, 25 s (CI). With ``-s`` it prints its figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _helpers import IMAGE

from hydra_vertex.emulator.limits import DEFAULT as LIMITS

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("HYDRA_VERTEX_LOAD_SECONDS", "25"))
CLIENTS = int(os.environ.get("HYDRA_VERTEX_LOAD_CLIENTS", "60"))
HALF_OPEN = int(os.environ.get("HYDRA_VERTEX_LOAD_HALF_OPEN", "300"))
MAX_GROWTH_MIB = 50
PARENT = "projects/load-project/locations/us-central1"
BRANIN = Path(__file__).parent / "apps" / "branin"


@dataclass
class Emulator:
    proc: subprocess.Popen[bytes]
    port: int
    token: str

    def status(self, key: str) -> int:
        """A field of /proc/PID/status (VmRSS in KiB, Threads)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
        raise KeyError(key)

    def sockets(self) -> int:
        fds = Path(f"/proc/{self.proc.pid}/fd")
        count = 0
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                count += os.readlink(fd).startswith("socket:")
        return count


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[Emulator]:
    state = tmp_path / "state"
    cli = Path(sys.executable).with_name("hydra-vertex")
    log = (tmp_path / "emulator.log").open("wb")
    proc = subprocess.Popen(
        [str(cli), "emulator", "--state-dir", str(state), "--no-grpc", "--quiet",
         "--image", f"{IMAGE}={BRANIN}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (state / "endpoint.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.1)
        info = json.loads((state / "endpoint.json").read_text())
        yield Emulator(proc, int(info["endpoint"].rsplit(":", 1)[1]), info["token"])
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n


def _client(emulator: Emulator) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.cloud import aiplatform_v1

    from hydra_vertex.vertex import bearer_credentials

    return aiplatform_v1.JobServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{emulator.port}"),
        credentials=bearer_credentials(emulator.token),
    )


def _legit(emulator: Emulator, i: int, warm: threading.Barrier, stop: threading.Event,
           tally: Tally) -> None:  # fmt: skip
    """Create a custom job, then get it and list jobs until told to stop."""
    from google.cloud import aiplatform_v1

    try:
        client = _client(emulator)
        pool = {
            "machine_spec": {"machine_type": "n1-standard-4"},
            "replica_count": 1,
            "container_spec": {"image_uri": IMAGE, "command": ["true"]},
        }
        job = client.create_custom_job(
            parent=PARENT,
            custom_job=aiplatform_v1.CustomJob(
                display_name=f"load-{i}", job_spec={"worker_pool_specs": [pool]}
            ),
        )
        client.get_custom_job(name=job.name)
    except Exception as e:
        tally.errors.append(f"client {i} (warm-up): {type(e).__name__}: {e}")
    warm.wait(timeout=300)
    while not stop.is_set():
        try:
            got = client.get_custom_job(name=job.name)
            assert got.display_name == f"load-{i}"
            client.list_custom_jobs(request={"parent": PARENT, "page_size": 10})
            tally.add("legit requests", 2)
        except Exception as e:
            tally.errors.append(f"client {i}: {type(e).__name__}: {e}")
            return


def _head(emulator: Emulator, path: str, length: int, token: bool) -> bytes:
    auth = f"Authorization: Bearer {emulator.token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{emulator.port}\r\n{auth}"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _oversized(emulator: Emulator, stop: threading.Event, tally: Tally, token: bool) -> None:
    """Declare a huge body and stream it as fast as the server takes it, again and again."""
    if token:  # over the API limit: 413 before reading
        path, length = "/v1/projects/load-project/locations/us-central1/customJobs", 64 << 20
    else:  # within the upload limit, but no token: 401 before reading
        path, length = "/upload/storage/v1/b/bucket/o?uploadType=media&name=big", 512 << 20
    chunk = b"\0" * (1 << 20)
    kind = "oversized (token)" if token else "oversized (no token)"
    while not stop.is_set():
        sent = 0
        try:
            with socket.create_connection(("127.0.0.1", emulator.port), timeout=30) as sock:
                sock.sendall(_head(emulator, path, length, token))
                while sent < length and not stop.is_set():
                    sent += sock.send(chunk)
        except OSError:
            tally.add(f"{kind}: cut off")
        tally.add(f"{kind}: connections")
        tally.add(f"{kind}: MiB the client got rid of", sent >> 20)


def _slow(emulator: Emulator, stop: threading.Event, tally: Tally, count: int = 20) -> None:
    """Bodies trickled at one byte a second, with the token (408 once the grace is over)."""
    path = "/v1/projects/load-project/locations/us-central1/customJobs"
    socks: list[socket.socket] = []
    while not stop.is_set():
        while len(socks) < count:
            s = socket.create_connection(("127.0.0.1", emulator.port), timeout=5)
            s.sendall(_head(emulator, path, 1 << 20, True))
            socks.append(s)
            tally.add("slow body: connections")
        for s in list(socks):
            try:
                s.send(b"{")
                s.setblocking(False)
                if s.recv(65536)[:12] == b"HTTP/1.1 408":
                    tally.add("slow body: 408")
                    raise OSError
            except BlockingIOError:
                pass
            except OSError:
                socks.remove(s)
                s.close()
            else:
                s.setblocking(True)
        stop.wait(1.0)
    for s in socks:
        s.close()


def _half_open(emulator: Emulator, stop: threading.Event, tally: Tally) -> None:
    """Hold HALF_OPEN connections that never finish their headers; reopen those closed."""
    selector = selectors.DefaultSelector()
    partial = f"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:{emulator.port}\r\nContent-Le".encode()

    def open_one() -> None:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", emulator.port))
        selector.register(s, selectors.EVENT_WRITE)
        tally.add("half-open: opened")

    for _ in range(HALF_OPEN):
        open_one()
    while not stop.is_set():
        for key, events in selector.select(timeout=0.5):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if events & selectors.EVENT_WRITE:
                try:
                    s.send(partial)
                    selector.modify(s, selectors.EVENT_READ)
                except OSError:
                    selector.unregister(s)
                    s.close()
                    open_one()
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:  # the server closed it: the header deadline
                tally.add("half-open: closed by the server")
                selector.unregister(s)
                s.close()
                open_one()
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]


def _sample(emulator: Emulator, stop: threading.Event, peaks: dict[str, int]) -> None:
    while not stop.wait(0.2):
        try:
            values = {
                "rss": emulator.status("VmRSS"),
                "threads": emulator.status("Threads"),
                "sockets": emulator.sockets(),
            }
        except (OSError, KeyError):
            return
        for k, v in values.items():
            peaks[k] = max(peaks.get(k, 0), v)


def _threads(target: Callable[..., None], *args: Any, n: int = 1) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=args, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def test_legitimate_clients_are_served_under_attack(emulator_process: Emulator) -> None:
    emulator, tally = emulator_process, Tally()
    warm = threading.Barrier(CLIENTS + 1)
    stop_legit, stop_attack, stop_sampling = threading.Event(), threading.Event(), threading.Event()
    legit = [
        threading.Thread(target=_legit, args=(emulator, i, warm, stop_legit, tally), daemon=True)
        for i in range(CLIENTS)
    ]
    for t in legit:
        t.start()
    warm.wait(timeout=300)  # every client has created its job and holds its connection
    assert not tally.errors, tally.errors[:5]
    base = {"rss": emulator.status("VmRSS"), "threads": emulator.status("Threads")}
    peaks: dict[str, int] = {}
    sampler = _threads(_sample, emulator, stop_sampling, peaks)
    attackers = [
        *_threads(_half_open, emulator, stop_attack, tally),
        *_threads(_oversized, emulator, stop_attack, tally, False, n=2),
        *_threads(_oversized, emulator, stop_attack, tally, True),
        *_threads(_slow, emulator, stop_attack, tally),
    ]
    stop_legit.wait(SECONDS)
    stop_legit.set()
    for t in legit:
        t.join(timeout=120)
    stop_attack.set()
    for t in attackers:
        t.join(timeout=120)
    stop_sampling.set()
    for t in sampler:
        t.join(timeout=30)
    growth_mib = (peaks["rss"] - base["rss"]) / 1024
    figures = {
        "seconds": SECONDS,
        "clients": CLIENTS,
        "legit errors": len(tally.errors),
        "rss baseline MiB": round(base["rss"] / 1024, 1),
        "rss peak MiB": round(peaks["rss"] / 1024, 1),
        "rss growth MiB": round(growth_mib, 1),
        "threads baseline": base["threads"],
        "threads peak": peaks["threads"],
        "sockets peak": peaks["sockets"],
        **tally.counts,
    }
    print("\nload test:", json.dumps(figures, indent=1))
    assert not tally.errors, tally.errors[:5]
    assert tally.counts.get("legit requests", 0) >= 2 * CLIENTS  # every client kept going
    assert growth_mib < MAX_GROWTH_MIB, figures
    # one thread per accepted connection at most, plus the emulator's own (runners, scheduler)
    assert peaks["threads"] <= base["threads"] + LIMITS.max_connections, figures
    assert tally.counts.get("half-open: closed by the server", 0) > 0, figures
    assert tally.counts.get("oversized (no token): cut off", 0) > 0, figures
