"""Runs that share an emulator started for them: a lease file per run under the state directory.

A ``hydra-vertex run --local`` (or a ``hydra/sweeper=vertex`` sweep) that finds no emulator starts
one in a process of its own, and any other run on the same state directory uses that one. Each run
holds a lease while it uses the emulator; the emulator it started is stopped only when no lease is
left, by the run that gives the last one back (or by the emulator itself, when every holder died
without giving its lease back). Layout under the state directory::

    leases.lock                 flock held while leases are taken, given back or counted
    leases/<pid>-<random>.json  {"pid", "start"}: one per run using the emulator
    auto-emulator.json          {"pid", "start"}: the emulator a run started (absent otherwise)

A lease is alive while its process is: the pid exists and started at ``start`` (the kernel's
start time of the process, so a reused pid does not keep a dead run's lease). Standard library
only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hydra_vertex.files import atomic_write_text

__all__ = [
    "Holder",
    "auto_emulator",
    "give_back",
    "holders",
    "locked",
    "process",
    "set_auto_emulator",
    "take",
]

LOCK_FILE = "leases.lock"
LEASES_DIR = "leases"
AUTO_FILE = "auto-emulator.json"


@dataclass(frozen=True)
class Holder:
    """A process, named so that a reused pid is not mistaken for it."""

    pid: int
    start: str | None

    def alive(self) -> bool:
        """True while this very process runs (a zombie has ended: it is not alive)."""
        found = process(self.pid)
        if found is None:
            return False
        start, state = found
        if state == "Z":
            return False
        return self.start is None or start is None or start == self.start

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "start": self.start})

    @classmethod
    def of(cls, pid: int) -> Holder:
        found = process(pid)
        return cls(pid, found[0] if found else None)

    @classmethod
    def read(cls, path: Path) -> Holder | None:
        try:
            data = json.loads(path.read_text())
            return cls(int(data["pid"]), data.get("start"))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def process(pid: int) -> tuple[str | None, str] | None:
    """``(start time, state letter)`` of a running process, None when there is none. The start
    time comes from ``/proc`` (None where there is no ``/proc``: then the pid alone is checked)."""
    if pid <= 0:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19], fields[0]
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return None if Path("/proc/self/stat").exists() else (None, "R")


@contextlib.contextmanager
def locked(state_dir: Path, *, wait: bool = True) -> Iterator[bool]:
    """The state directory's lease lock, held while inside; yields whether it is held (with
    ``wait=False`` it is not when another process holds it)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def take(state_dir: Path, pid: int | None = None) -> Path:
    """A lease for process ``pid`` (default: this one); call with the lock held. Each call
    takes a lease of its own (one process may run two runs)."""
    holder = Holder.of(pid if pid is not None else os.getpid())
    path = state_dir / LEASES_DIR / f"{holder.pid}-{secrets.token_hex(4)}.json"
    atomic_write_text(path, holder.to_json(), mode=0o600)
    return path


def give_back(lease: Path) -> None:
    lease.unlink(missing_ok=True)


def holders(state_dir: Path, *, prune: bool = True) -> list[Holder]:
    """The live leases' holders; with ``prune`` (and the lock held), the leases of dead
    processes are removed."""
    out = []
    for path in sorted((state_dir / LEASES_DIR).glob("*.json")):
        holder = Holder.read(path)
        if holder is not None and holder.alive():
            out.append(holder)
        elif prune:
            path.unlink(missing_ok=True)
    return out


def auto_emulator(state_dir: Path) -> Holder | None:
    """The emulator a run started on this state directory, if it still runs."""
    path = state_dir / AUTO_FILE
    holder = Holder.read(path)
    if holder is not None and holder.alive():
        return holder
    path.unlink(missing_ok=True)
    return None


def set_auto_emulator(state_dir: Path, pid: int | None) -> None:
    """Record (or, with None, forget) the emulator a run started."""
    path = state_dir / AUTO_FILE
    if pid is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_text(path, Holder.of(pid).to_json(), mode=0o600)
