"""``python -I -S _supervise.py STATUS ARGV...``: run ARGV and write how it ended to STATUS.

Every process the emulator starts for a trial or a custom job runs under this supervisor. The
trial's exit status is what decides its end, and only the parent of a process can read it. Trials
outlive the emulator by design (own sessions, so that a ``kill -9`` of the emulator loses no
work), and a restarted emulator is not their parent any more: the supervisor, which is, records the
status in a file the emulator reads whenever it comes to look (:mod:`executor`).

- STATUS gets ``{"exit_code": N}``, ``{"signal": N}`` or ``{"error": "..."}`` (ARGV could not
  be started), written to a temporary file beside it and renamed into place: a reader sees the
  whole status or none.
- The supervisor leads the process group (the emulator starts it in a session of its own) and waits
  for ARGV. SIGTERM, SIGINT and SIGHUP sent to the group reach ARGV, which ends as it chooses; the
  supervisor itself outlives them to record that end (only SIGKILL stops it, and then nothing is
  written: the emulator knows why, it sent it).
- It exits with ARGV's exit code (128 + N for a signal, as a shell does).

Standard library only, started with ``-I -S`` (no site, no user paths), so that it adds little
to each trial's start.
"""

from __future__ import annotations

import json
import os
import signal
import sys

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Python starts with these ignored; an ignored signal stays ignored across exec, so ARGV gets
# them back at their defaults (as subprocess.Popen does).
_DEFAULTED = (signal.SIGPIPE, signal.SIGXFSZ, *_FORWARDED)


def _write(path: str, status: dict[str, object]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(status))
    os.replace(tmp, path)


def _ignore(signum: int, frame: object) -> None:
    """A handler, not SIG_IGN: handlers are reset at exec, so ARGV still gets the signal."""


def main(argv: list[str]) -> int:
    status_path, command = argv[0], argv[1:]
    for sig in _FORWARDED:
        signal.signal(sig, _ignore)
    try:
        pid = os.posix_spawnp(command[0], command, os.environ, setsigdef=_DEFAULTED)
    except OSError as e:
        message = f"cannot run {command[0]!r}: {e.strerror or e}"
        print(f"hydra-vertex: {message}", file=sys.stderr, flush=True)
        _write(status_path, {"error": message})
        return 127
    _, wait_status = os.waitpid(pid, 0)  # retried by Python when a signal interrupts it
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        _write(status_path, {"signal": signum})
        return 128 + signum
    code = os.waitstatus_to_exitcode(wait_status)
    _write(status_path, {"exit_code": code})
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
