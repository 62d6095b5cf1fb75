"""Trial processes: one directory per trial, logs to files, own process group, group kill.

A trial runs as a container would: ``command + args`` (an argv list, no shell) in the image's
working directory, with the Vertex trial environment. Status comes from the exit code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GRACE_SECONDS = 5.0
# Variables that must never reach a trial (the emulator's bearer token above all).
_SCRUBBED_ENV = ("HYDRA_VERTEX_EMULATOR_TOKEN",)


@dataclass
class Outcome:
    exit_code: int | None  # None when killed by a signal
    signal: int | None
    timed_out: bool


class TrialProcess:
    """A running trial; ``poll()`` returns its Outcome once it has ended.

    A waiter thread blocks on the process and sets ``exited`` (and ``notify``, when given) the
    moment it ends, so a runner can sleep on an event instead of polling on a fixed period.
    """

    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        run_dir: Path,
        timeout: float | None = None,
        notify: threading.Event | None = None,
    ) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.timeout = timeout
        self.started = time.monotonic()
        self._killed_for_timeout = False
        with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # own process group: kill reaches grandchildren
                close_fds=True,
            )
        self.pid = self.proc.pid
        self.exited = threading.Event()
        self._notify = notify
        threading.Thread(target=self._wait, name=f"trial-{self.pid}", daemon=True).start()

    def _wait(self) -> None:
        # Popen.wait holds Popen's waitpid lock; poll() from other threads then returns None
        # until the child is reaped here, and the returncode is set before the events fire.
        with contextlib.suppress(Exception):
            self.proc.wait()
        self.exited.set()
        if self._notify is not None:
            self._notify.set()

    def wait(self, timeout: float) -> None:
        """Sleep until the process ends or ``timeout`` seconds pass."""
        self.exited.wait(timeout)

    def poll(self) -> Outcome | None:
        if (
            self.timeout is not None
            and not self._killed_for_timeout
            and time.monotonic() - self.started > self.timeout
            and self.proc.poll() is None
        ):
            self._killed_for_timeout = True
            kill_group(self.pid, self.proc)
        code = self.proc.poll()
        if code is None:
            return None
        kill_group(self.pid, None, grace=0)  # reap stragglers left in the group
        if code < 0:
            return Outcome(None, -code, self._killed_for_timeout)
        return Outcome(code, None, self._killed_for_timeout)

    def kill(self) -> None:
        kill_group(self.pid, self.proc)


def kill_group(
    pgid: int, proc: subprocess.Popen[bytes] | None, grace: float = GRACE_SECONDS
) -> None:
    """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL it."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trial_env(
    base: dict[str, str], extra: dict[str, str], python_bin: str | None
) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in _SCRUBBED_ENV}
    if python_bin:
        env["PATH"] = python_bin + os.pathsep + env.get("PATH", "")
    env.update(extra)
    for k in _SCRUBBED_ENV:
        env.pop(k, None)
    return env


def tail(path: Path, lines: int = 10, max_bytes: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
