"""Durable emulator state, kept apart from the handlers.

Layout under the state directory::

    state.json                      {"schema_version": N}
    LOCK                            flock held by the one server using this directory
    jobs/<collection>/<id>.json     {"resource": <proto-JSON dict>, "internal": {...}}
                                    (custom, tuning and pipeline jobs; schedules)
    quarantine/<collection>/<id>.json  job files that could not be served (see below)
    runs/<job id>/<trial id>/       one directory per trial or custom job (logs, metrics, outputs)
    storage/<bucket>/<path>         the local backing of gs:// locations

Every write goes to a temporary file in the same directory and is renamed into place, so a
``kill -9`` leaves either the old or the new record, never a torn one.

Faults: a job file that does not parse, or whose shape the ``check`` given to the store refuses
(``records.problem``: the small schema of a record), is moved to ``quarantine/`` with one warning
line naming the file and why, and the emulator starts without it. A state directory that cannot
be written is refused at start with one line (:class:`~hydra_vertex.errors.EmulatorError`); a write
that fails later (disk full, read-only, removed) raises
:class:`~hydra_vertex.errors.StateWriteError` naming the record, the file and the reason, with the
record in memory left as it was.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hydra_vertex.errors import EmulatorError, StateWriteError
from hydra_vertex.files import atomic_write_bytes
from hydra_vertex.local_conventions import local_path, storage_root

SCHEMA_VERSION = 1
COLLECTIONS = ("customJobs", "hyperparameterTuningJobs", "pipelineJobs", "schedules")
# Numeric ids for jobs the emulator names; pipeline jobs may carry the client's own id
# (``pipelineJobId``: lowercase letters, digits and hyphens, as Vertex allows).
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")

Record = dict[str, Any]
#: ``check(collection, job_id, record)``: why a loaded record cannot be served, or None.
Check = Callable[[str, str, Any], "str | None"]
log = logging.getLogger("hydra_vertex.emulator")
_HINTS = {
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is exhausted: free some space",
    errno.EROFS: "the state directory is on a read-only file system",
    errno.EACCES: "the state directory is not writable by this user",
    errno.EPERM: "the state directory is not writable by this user",
}


def os_reason(error: OSError) -> str:
    """``strerror`` and what to do about it, in words (one line)."""
    hint = _HINTS.get(error.errno or 0)
    reason = error.strerror or str(error)
    return f"{reason} ({hint})" if hint else reason


def now() -> str:
    """A resource timestamp: RFC 3339 UTC with microseconds, as Vertex writes them."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def atomic_write_json(path: Path, data: Any) -> None:
    """The store's records: compact JSON, owner-only (mode 0600)."""
    atomic_write_bytes(path, json.dumps(data, separators=(",", ":")).encode(), mode=0o600)


def valid_id(job_id: str) -> bool:
    return bool(_ID_RE.match(job_id))


class Store:
    """Jobs by collection and id, in memory and on disk. Thread-safe; one process per directory."""

    def __init__(self, state_dir: str | os.PathLike[str], check: Check | None = None) -> None:
        self.root = Path(state_dir).absolute()
        self._check = check
        self._lock = threading.RLock()
        self._lock_fd = -1
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.root.is_symlink():
                raise EmulatorError(f"state directory {str(self.root)!r} must not be a symlink")
            self._lock_fd = self._acquire_dir_lock()
            self._check_schema()
            self._probe_write()
            self._records: dict[str, dict[str, Record]] = {c: {} for c in COLLECTIONS}
            self._load()
        except OSError as e:
            self.close()
            where = e.filename if e.filename is not None else self.root
            raise EmulatorError(
                f"state directory {str(self.root)!r} cannot be used: {os_reason(e)} "
                f"({str(where)!r}); pass a writable --state-dir"
            ) from None
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------------
    def _acquire_dir_lock(self) -> int:
        fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EmulatorError(
                f"another emulator is already using state directory {str(self.root)!r} "
                "(stop it, or pass a different --state-dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    def close(self) -> None:
        with self._lock:
            if self._lock_fd >= 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = -1

    def _check_schema(self) -> None:
        path = self.root / "state.json"
        if path.is_symlink():
            raise EmulatorError(f"{str(path)!r} is a symlink; refusing to use it")
        if not path.exists():
            atomic_write_json(path, {"schema_version": SCHEMA_VERSION})
            return
        try:
            data = json.loads(path.read_bytes())
        except ValueError as e:
            raise EmulatorError(
                f"{str(path)!r} is not valid JSON ({e}); it should read "
                f'{{"schema_version": {SCHEMA_VERSION}}}: restore it, or use another --state-dir'
            ) from None
        version = data.get("schema_version") if isinstance(data, dict) else None
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise EmulatorError(
                f"state directory {str(self.root)!r} has schema_version {version!r}, newer than "
                f"this emulator's {SCHEMA_VERSION}: upgrade hydra-vertex or use another --state-dir"
            )

    def _probe_write(self) -> None:
        """Fail at start, not at the first job, when the directory cannot be written."""
        probe = atomic_write_bytes(self.root / ".write-probe", b"", mode=0o600)
        probe.unlink()

    def _load(self) -> None:
        for collection in COLLECTIONS:
            directory = self.root / "jobs" / collection
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.json")):
                if path.is_symlink() or not valid_id(path.stem):
                    continue  # planted or foreign files are ignored, never followed
                try:
                    record = json.loads(path.read_bytes())
                except ValueError as e:
                    size = path.stat().st_size
                    torn = "it is empty" if size == 0 else f"it is not JSON ({e}; {size} bytes)"
                    self._quarantine(collection, path, torn)
                    continue
                why = self._check(collection, path.stem, record) if self._check else None
                if why is not None:
                    self._quarantine(collection, path, why)
                    continue
                self._records[collection][path.stem] = record

    def _quarantine(self, collection: str, path: Path, why: str) -> None:
        """Move a job file that cannot be served out of the way, and say so in one line."""
        directory = self.root / "quarantine" / collection
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        dest = directory / path.name
        n = 1
        while dest.exists():
            dest = directory / f"{path.stem}.{n}.json"
            n += 1
        os.replace(path, dest)
        log.warning(
            "quarantined %s: %s; moved to %s (the emulator runs without it)",
            path,
            " ".join(why.split()),
            dest.relative_to(self.root),
        )

    # -- records ---------------------------------------------------------------------------------
    def _path(self, collection: str, job_id: str) -> Path:
        if collection not in COLLECTIONS or not valid_id(job_id):
            raise EmulatorError(f"invalid resource {collection}/{job_id!r}")
        return self.root / "jobs" / collection / f"{job_id}.json"

    def new_id(self, collection: str) -> str:
        with self._lock:
            while True:
                job_id = str(10**17 + secrets.randbelow(9 * 10**17))
                if job_id not in self._records[collection]:
                    return job_id

    def put(self, collection: str, job_id: str, record: Record) -> None:
        """Save ``record``; :class:`StateWriteError` if the disk refuses (memory unchanged)."""
        with self._lock:
            path = self._path(collection, job_id)
            try:
                atomic_write_json(path, record)
            except OSError as e:
                raise StateWriteError(
                    f"cannot save {collection}/{job_id} to {str(path)!r}: {os_reason(e)}"
                ) from None
            self._records[collection][job_id] = copy.deepcopy(record)

    def get(self, collection: str, job_id: str) -> Record | None:
        with self._lock:
            rec = self._records.get(collection, {}).get(job_id)
            return copy.deepcopy(rec) if rec is not None else None

    def update(self, collection: str, job_id: str, fn: Callable[[Record], None]) -> Record:
        """Apply ``fn`` to a copy of the record under the lock and persist it atomically."""
        with self._lock:
            rec = self._records[collection].get(job_id)
            if rec is None:
                raise KeyError(job_id)
            new = copy.deepcopy(rec)
            fn(new)
            self.put(collection, job_id, new)
            return copy.deepcopy(new)

    def delete(self, collection: str, job_id: str) -> None:
        with self._lock:
            path = self._path(collection, job_id)
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                raise StateWriteError(
                    f"cannot delete {collection}/{job_id} ({str(path)!r}): {os_reason(e)}"
                ) from None
            self._records[collection].pop(job_id, None)

    def items(self, collection: str) -> Iterator[tuple[str, Record]]:
        with self._lock:
            snapshot = copy.deepcopy(self._records[collection])
        return iter(sorted(snapshot.items()))

    # -- directories -----------------------------------------------------------------------------
    def run_dir(self, job_id: str, trial_id: str | None = None) -> Path:
        parts = [job_id] + ([trial_id] if trial_id else [])
        if not all(valid_id(p) for p in parts):
            raise EmulatorError(f"invalid run directory {parts!r}")
        return self.root.joinpath("runs", *parts)

    @property
    def storage_root(self) -> Path:
        return storage_root(self.root)

    def local_path(self, uri: str) -> Path:
        """The local backing of a ``gs://bucket/path`` URI, confined to the storage root."""
        return local_path(self.storage_root, uri)
