"""The emulator a local run talks to: the one ``HYDRA_VERTEX_EMULATOR`` names, else the one whose
``endpoint.json`` is in the state directory (if it answers), else one started for the run.

Shared by ``hydra-vertex run --local`` and the Hydra sweeper (``hydra/sweeper=vertex``). An
emulator started for a run is a process of its own (``python -m hydra_vertex.local_emulator``,
in its own session, logging to ``STATE_DIR/emulator.log``): other runs on the same state directory
use it too, and it is stopped when the last run using it gives its lease back
(:mod:`hydra_vertex.leases`), or by itself when every run that held a lease died. It serves REST
only (what the runs use; ``hydra-vertex emulator`` serves gRPC as well).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydra_vertex import leases
from hydra_vertex.errors import EmulatorError, HydraVertexError
from hydra_vertex.local_conventions import storage_root
from hydra_vertex.vertex import EMULATOR_ENV, EMULATOR_TOKEN_ENV

if TYPE_CHECKING:  # pragma: no cover
    from hydra_vertex.emulator import EmulatorHandle

__all__ = [
    "DEFAULT_STATE_DIR",
    "EmulatorInfo",
    "Lease",
    "alive",
    "emulator",
    "environ",
    "lease",
    "pointed_at",
]

DEFAULT_STATE_DIR = Path(".hydra-vertex") / "emulator"
LOG_FILE = "emulator.log"
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 60.0
# An emulator started for runs stops by itself after this long without a live lease.
IDLE_SECONDS = 2.0
_children: list[subprocess.Popen[bytes]] = []  # emulators this process started (reaped here)


@dataclass(frozen=True)
class EmulatorInfo:
    endpoint: str
    token: str
    storage_root: Path | None  # None when only the endpoint is known
    started_here: bool


def alive(endpoint: str, token: str, timeout: float = 2.0) -> bool:
    """Whether an emulator answers at ``endpoint`` with ``token`` (a one-item list). A stopped
    one is refused at once; a busy machine may take seconds to answer (``timeout``)."""
    request = urllib.request.Request(
        f"{endpoint}/v1/projects/ping/locations/us-central1/customJobs?pageSize=1",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def running_emulator(state_dir: Path, timeout: float = 2.0) -> dict[str, str] | None:
    """``endpoint.json``'s content for the emulator on ``state_dir`` when it answers, else None."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        info = json.loads((state_dir / "endpoint.json").read_text())
        if alive(str(info["endpoint"]), str(info.get("token", "")), timeout):
            return {k: str(v) for k, v in info.items()}
    return None


def _answering(state_dir: Path, started_here: bool = False) -> EmulatorInfo | None:
    """The emulator of ``state_dir/endpoint.json`` if it answers."""
    info = running_emulator(state_dir)
    if info is None:
        return None
    return EmulatorInfo(
        info["endpoint"], info.get("token", ""), storage_root(state_dir), started_here
    )


class Lease:
    """A run's use of an emulator. ``info()`` waits until the emulator answers (one started for
    this run starts in the background meanwhile)."""

    def __init__(
        self,
        state_dir: Path | None,
        *,
        known: EmulatorInfo | None = None,
        started: subprocess.Popen[bytes] | None = None,
        path: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.path = path
        self.started = started
        self.used = False  # set by use(): a run that never got this far leaves nothing behind
        self._info = known

    @property
    def started_here(self) -> bool:
        return self.started is not None

    def use(self) -> EmulatorInfo:
        """:meth:`info`, for a run that now puts something on the emulator (its state then
        stays when the run ends)."""
        info = self.info()
        self.used = True
        return info

    def info(self, timeout: float = START_TIMEOUT_SECONDS) -> EmulatorInfo:
        if self._info is not None:
            return self._info
        assert self.state_dir is not None
        deadline = time.monotonic() + timeout
        wait = 0.02
        while True:
            found = _answering(self.state_dir, self.started_here)
            if found is not None:
                self._info = found
                return found
            if self.started is not None and self.started.poll() is not None:
                raise EmulatorError(
                    f"the emulator started for this run exited (code {self.started.returncode}) "
                    f"before it answered: {_last_line(self.state_dir / LOG_FILE)} (its log: "
                    f"{self.state_dir / LOG_FILE})"
                )
            if self.started is None and leases.auto_emulator(self.state_dir) is None:
                raise EmulatorError(
                    f"the emulator of {self.state_dir} stopped before it answered; run again"
                )
            if time.monotonic() > deadline:
                raise EmulatorError(
                    f"the emulator of {self.state_dir} did not answer within {timeout:.0f}s "
                    f"(its log: {self.state_dir / LOG_FILE})"
                )
            time.sleep(wait)
            wait = min(0.2, wait * 1.5)


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return "no output"


@contextlib.contextmanager
def lease(state_dir: Path, seed: int | None = None) -> Iterator[Lease]:
    """Use the emulator for ``state_dir`` while inside, starting one (in the background) if none
    answers. The emulator this started stops when no run holds a lease any more."""
    explicit = os.environ.get(EMULATOR_ENV)
    if explicit:
        token = os.environ.get(EMULATOR_TOKEN_ENV, "")
        yield Lease(None, known=EmulatorInfo(explicit.rstrip("/"), token, None, False))
        return
    state_dir = Path(state_dir).absolute()
    fresh = not state_dir.exists()
    started: subprocess.Popen[bytes] | None = None
    with leases.locked(state_dir):
        path = leases.take(state_dir)
        known = _answering(state_dir)
        if known is None and leases.auto_emulator(state_dir) is None:
            started = _spawn(state_dir, seed)
            leases.set_auto_emulator(state_dir, started.pid)
    held = Lease(state_dir, known=known, started=started, path=path)
    try:
        yield held
    finally:
        release(state_dir, path, remove=fresh and not held.used)


def release(state_dir: Path, path: Path, *, remove: bool = False) -> None:
    """Give the lease at ``path`` back; the last one out stops the emulator started for runs
    (and waits until it has, so the state directory is free when this returns). ``remove``: a
    state directory this run created and never used goes too (nobody else used it either)."""
    with leases.locked(state_dir):
        leases.give_back(path)
        _reap()
        if leases.holders(state_dir):
            return
        _stop_auto_emulator(state_dir)
        if remove and not list((state_dir / "jobs").glob("*/*.json")):
            shutil.rmtree(state_dir, ignore_errors=True)
    _reap()


def _stop_auto_emulator(state_dir: Path) -> None:
    auto = leases.auto_emulator(state_dir)
    if auto is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(auto.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while auto.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
        _reap()
    if auto.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(auto.pid, signal.SIGKILL)
    leases.set_auto_emulator(state_dir, None)


def _reap() -> None:
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def _spawn(state_dir: Path, seed: int | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "hydra_vertex.local_emulator", "--state-dir", str(state_dir)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(EMULATOR_ENV)}
    with open(state_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal reaches the run, not the emulator
        )
    _children.append(proc)
    return proc


@contextlib.contextmanager
def emulator(state_dir: Path, seed: int | None = None) -> Iterator[EmulatorInfo]:
    """The emulator to use while inside (a :func:`lease`, waited for)."""
    with lease(state_dir, seed) as held:
        yield held.use()


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set while inside, as it was afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pointed_at(emu: EmulatorInfo) -> contextlib.AbstractContextManager[None]:
    """Every Vertex call of hydra-vertex goes to ``emu`` while inside."""
    return environ({EMULATOR_ENV: emu.endpoint, EMULATOR_TOKEN_ENV: emu.token})


# -- the emulator started for runs --------------------------------------------------------------
def serve(argv: list[str] | None = None) -> int:  # pragma: no cover - a process of its own
    """``python -m hydra_vertex.local_emulator --state-dir DIR [--seed N]``: an emulator for the
    runs holding leases on DIR; stops on SIGTERM/SIGINT, or by itself after ``IDLE_SECONDS``
    without a live lease."""
    parser = argparse.ArgumentParser(prog="python -m hydra_vertex.local_emulator")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    state_dir = args.state_dir.absolute()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from hydra_vertex.emulator import start

    try:
        handle = start(state_dir, seed=args.seed, grpc_port=None)
    except HydraVertexError as e:
        print(f"hydra-vertex: error: {e}", flush=True)
        return 1
    print(f"hydra-vertex: emulator at {handle.endpoint} for the runs leasing {state_dir}")
    stopped = False
    try:
        idle_since: float | None = None
        while not stopped and not stop.wait(0.5):
            if leases.holders(state_dir, prune=False):
                idle_since = None
                continue
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= IDLE_SECONDS:
                stopped = _stop_if_unused(state_dir, handle)
    finally:
        if not stopped:
            handle.stop()
    print("hydra-vertex: emulator stopped" + (" (no run holds a lease)" if stopped else ""))
    return 0


def _stop_if_unused(state_dir: Path, handle: EmulatorHandle) -> bool:
    """Stop ``handle`` if still no run holds a lease, under the lease lock (not waited for: a
    run holding it may be stopping this emulator right now). True if stopped."""
    with leases.locked(state_dir, wait=False) as held:
        if not held or leases.holders(state_dir):
            return False
        handle.stop()
        auto = leases.auto_emulator(state_dir)
        if auto is not None and auto.pid == os.getpid():
            leases.set_auto_emulator(state_dir, None)
        return True


if __name__ == "__main__":
    code = serve()
    sys.stdout.flush()
    # Stopped and saved: skip the interpreter's teardown, which would wait for the suggester's
    # background imports (seconds) while the run that stopped this emulator waits for its exit.
    os._exit(code)
