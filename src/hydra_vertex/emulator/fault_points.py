"""Fault injection for tests only: ``HYDRA_VERTEX_FAULT=<point>:<action>[:<n>][,...]``.

The crash-recovery tests must kill the emulator at exact places (between storing a trial and
storing its process id, say), which no timing can hit reliably. Each place the runners pass calls
:func:`reach` with its name; when the variable names it, the ``n``-th time it is reached (default
the first) in this emulator process, the action happens:

- ``die``: the emulator kills itself with SIGKILL (what ``kill -9`` does);
- ``raise``: the runner gets ``OSError(ENOSPC)``, as if the disk were full while saving.

Points: ``trial-stored`` (a trial is stored ACTIVE, its process not started yet),
``process-started`` (a trial's or a custom job's process has started, its pid is not stored yet),
``trial-ended`` (a trial's end is stored, the next trial is not started yet), ``cancelling`` (a
runner has seen the cancel request and not yet stopped anything).

Not for users: nothing sets the variable but the tests (docs/emulator.md, "Faults and
guarantees").
"""

from __future__ import annotations

import errno
import os
import signal
import threading

FAULT_ENV = "HYDRA_VERTEX_FAULT"
POINTS = ("trial-stored", "process-started", "trial-ended", "cancelling")
_lock = threading.Lock()
_reached: dict[str, int] = {}


def reach(point: str) -> None:
    """Pass fault point ``point``: the action set for it in :data:`FAULT_ENV` happens, if any."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    with _lock:
        count = _reached[point] = _reached.get(point, 0) + 1
    for item in spec.split(","):
        name, _, rest = item.strip().partition(":")
        action, _, nth = rest.partition(":")
        if name != point or count != int(nth or 1):
            continue
        if action == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "raise":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
