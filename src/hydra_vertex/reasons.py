"""The deciding line: why a trial (or a custom job) failed, in one line, from its logs.

A failed process leaves a log whose most useful line is rarely the last one: Hydra closes with
"Set the environment variable HYDRA_FULL_ERROR=1 ...", a traceback closes with its exception
line, and hydra-vertex's own diagnostics (``hydra-vertex: ...``, ``hydra-vertex-shim: error:
...``) may sit above the noise. :func:`deciding_line` picks, from a log's tail, the most
specific line known:

1. hydra-vertex's own diagnostic (the last one);
2. the exception line of the last traceback (the first line of its message);
3. Hydra's own error message (a config that does not compose: ``Could not override 'x'``,
   ``In 'hydra/config': Could not find 'hydra/sweeper/optuna'``, ...), its first lines joined;
4. else the last line written to stderr (stdout when stderr is empty).

stderr is searched first, then stdout (Hydra's job logging writes there). ANSI escape sequences
are removed from everything this module returns: reasons end up in files and web pages.
:func:`exit_reason` puts the exit code (or signal) after the line. Pure functions, stdlib only.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["deciding_line", "exit_reason", "first_line", "strip_ansi", "trial_reason"]

# CSI (colours, cursor), OSC (titles, hyperlinks) and two-character escapes.
_ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]"
)
_OURS_RE = re.compile(r"^(hydra-vertex-shim: error: |hydra-vertex: )\S")
_OUR_WARNING = "hydra-vertex: warning: "  # our warnings are never the reason
_PY_WARNING_RE = re.compile(r"^\S.*:\d+: \w*Warning: ")
_HYDRA_FOOTER = "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."
_HYDRA_JOB_ERROR = "Error executing job with overrides:"
_TRACEBACK = "Traceback (most recent call last):"
# google.api_core's error for an HTTP answer: "<class>: <code> <METHOD> <url>: <message>"
_API_ERROR_RE = re.compile(
    r"^google\.api_core\.exceptions\.\w+: (?:\d{3} )?(?:[A-Z]+ \S+: )?(?P<message>.+)$"
)
_MAX_JOINED = 240  # characters of a multi-line Hydra message kept on the deciding line
_MAX_LINE = 400
TAIL_BYTES = 16384
SHOWN_LINES = 10


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (and without stray carriage returns)."""
    return _ANSI_RE.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def first_line(reason: str) -> str:
    """The first line of a stored reason, ANSI-free (what tables and summaries show)."""
    lines = strip_ansi(reason or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def _clip(line: str) -> str:
    line = line.strip()
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def _ours(lines: list[str]) -> str | None:
    for line in reversed(lines):
        if _OURS_RE.match(line) and not line.startswith(_OUR_WARNING):
            return line.strip()
    return None


def _exception_line(lines: list[str]) -> str | None:
    """The first line of the last traceback's exception (``ValueError: bad value``); for an error
    answer of a Google API (the emulator's 400 naming a field), the answer's message alone."""
    starts = [i for i, line in enumerate(lines) if line.strip() == _TRACEBACK]
    if not starts:
        return None
    for line in lines[starts[-1] + 1 :]:
        if line.strip() and not line.startswith((" ", "\t")):  # frames are indented
            answer = _API_ERROR_RE.match(line.strip())
            return answer.group("message") if answer else line.strip()
    return None


def _hydra_message(lines: list[str]) -> str | None:
    """Hydra's compact error (printed before its HYDRA_FULL_ERROR footer), first lines joined."""
    footers = [i for i, line in enumerate(lines) if line.strip() == _HYDRA_FOOTER]
    if not footers:
        return None
    start = 0
    for i in range(footers[-1] - 1, -1, -1):
        if lines[i].startswith(_HYDRA_JOB_ERROR):
            start = i + 1
            break
    parts: list[str] = []
    in_warning = False
    for line in lines[start : footers[-1]]:
        if _PY_WARNING_RE.match(line):  # "x.py:3: UserWarning: ..." and its indented source
            in_warning = True
            continue
        if in_warning and line.startswith((" ", "\t")):
            continue
        in_warning = False
        if not parts and not line.strip():
            continue
        if not line.strip() or line.startswith((" ", "\t")) or line.rstrip().endswith(":"):
            break
        parts.append(line.strip().rstrip("."))
        if len("; ".join(parts)) >= _MAX_JOINED or len(parts) == 3:
            break
    return "; ".join(parts) if parts else None


def _last_line(lines: list[str]) -> str | None:
    for line in reversed(lines):
        if line.strip() and line.strip() != _HYDRA_FOOTER:
            return line.strip()
    return None


def deciding_line(stderr: str, stdout: str = "") -> str | None:
    """The most specific line in a failed process's output (see the module docstring), or None."""
    streams = [strip_ansi(stderr).splitlines(), strip_ansi(stdout).splitlines()]
    for finder in (_ours, _exception_line, _hydra_message):
        for lines in streams:
            found = finder(lines)
            if found:
                return _clip(found)
    found = _last_line(streams[0]) or _last_line(streams[1])
    return _clip(found) if found else None


def exit_reason(
    stderr: str,
    stdout: str = "",
    *,
    exit_code: int | None,
    signal: int | None = None,
    timed_out: bool = False,
) -> str:
    """The deciding line with the exit code (or signal) after it; the timeout, when it killed."""
    if timed_out:
        return "exceeded scheduling.timeout and was killed"
    how = f"killed by signal {signal}" if signal is not None else f"exit code {exit_code}"
    line = deciding_line(stderr, stdout)
    if line is None:
        return how if signal is not None else f"exited with code {exit_code}"
    return f"{line} ({how})"


def _tail(path: Path, max_bytes: int = TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def trial_reason(
    run_dir: Path, *, exit_code: int | None, signal: int | None, timed_out: bool
) -> str:
    """A failed process's reason from its ``stderr.log``/``stdout.log`` in ``run_dir``.

    The first line is :func:`exit_reason`; the last lines of the log follow (ANSI-free), for the
    console and the trial's record.
    """
    err = _tail(run_dir / "stderr.log")
    out = _tail(run_dir / "stdout.log")
    head = exit_reason(err, out, exit_code=exit_code, signal=signal, timed_out=timed_out)
    shown = [line for line in strip_ansi(err or out).splitlines() if line.strip()]
    tail = "\n".join(shown[-SHOWN_LINES:])
    return f"{head}\nlast log lines:\n{tail}" if tail else head
