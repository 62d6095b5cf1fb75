"""The process backend: a job's or a trial's container run as a local process.

- :class:`Launcher` turns a ``CustomJobSpec`` (proto-JSON) into a process, as a container would
  run: :func:`container_argv` (``command``/``args`` over the image's ``ENTRYPOINT``/``CMD``, then
  the trial's arguments; an argv list, no shell) in the image's working directory, with the
  Vertex environment (``CLOUD_ML_*``, ``AIP_*``: local paths under the storage root, what
  ``/gcs/...`` is on Vertex).
- :class:`TrialProcess`: one directory per run, logs to files, its own process group (a kill
  reaches grandchildren), under a supervisor (:mod:`_supervise`) that writes its exit status
  to a file, so that its end is known even when the emulator was down when it came;
  :func:`describe_exit` says how it ended.
- After a restart: every process carries a marker in its environment (:data:`MARKER_ENV`,
  stored before it starts); :func:`locate` finds its supervisor again (the recorded pid and
  ``/proc`` start time, else the marker), :meth:`TrialProcess.adopt` waits for it;
  :func:`kill_marked` and :func:`kill_leftover` kill what must not go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from hydra_vertex import images, reasons
from hydra_vertex.emulator.devices import device_env
from hydra_vertex.overrides import OUTPUT_DIR_ENV

GRACE_SECONDS = 5.0
SUPERVISOR = Path(__file__).with_name("_supervise.py")
# Every process the emulator starts carries its marker in its environment
# (``<job id>/<trial id or "job">/<nonce>``, stored before the process starts): after a restart the
# process is found again by it, even if the emulator died before it stored the pid.
MARKER_ENV = "HYDRA_VERTEX_TRIAL_MARKER"
# Variables that must never reach a trial (the emulator's bearer token above all); a variable
# whose value holds one of the emulator's tokens (API or console) is dropped too, whatever its name.
_SCRUBBED_ENV = ("HYDRA_VERTEX_EMULATOR_TOKEN",)


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None  # None when killed by a signal
    signal: int | None
    timed_out: bool
    lost: bool = False  # the process is gone and left no exit status (see TrialProcess)


class TrialProcess:
    """A trial's or a custom job's process: its supervisor (:mod:`_supervise`), which leads the
    process group, runs the command, and writes how it ended to ``exit_status.json`` in the run
    directory. ``poll()`` returns the Outcome once it has ended.

    Started here (:meth:`spawn`) or found again after a restart of the emulator (:meth:`adopt`: not
    this process's child, so it is waited on through a pidfd, or ``/proc`` where there is none).
    Either way its end is read from the status file; a process that is gone without one ended
    unseen (killed with its supervisor): ``Outcome.lost``.

    A waiter thread sets ``exited`` (and ``notify``, when given) the moment the process ends, so a
    runner can sleep on an event instead of polling on a fixed period.
    """

    def __init__(
        self,
        pid: int,
        run_dir: Path,
        timeout: float | None = None,
        notify: threading.Event | None = None,
        elapsed: float = 0.0,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.pid = pid
        self.run_dir = run_dir
        self.timeout = timeout
        self.started = time.monotonic() - elapsed
        self._popen = popen
        self._killed_for_timeout = False
        self.exited = threading.Event()
        self._notify = notify
        threading.Thread(target=self._wait, name=f"trial-{pid}", daemon=True).start()

    @classmethod
    def spawn(
        cls,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        run_dir: Path,
        timeout: float | None = None,
        notify: threading.Event | None = None,
    ) -> TrialProcess:
        """Start ``argv`` under the supervisor in a session of its own (a kill reaches
        grandchildren), stdout and stderr appended to the run directory's logs."""
        run_dir.mkdir(parents=True, exist_ok=True)
        status = status_file(run_dir)
        status.unlink(missing_ok=True)  # a run started again after a restart
        supervised = [sys.executable, "-I", "-S", str(SUPERVISOR), str(status), *argv]
        with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
            popen = subprocess.Popen(
                supervised,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # own process group: kill reaches grandchildren
                close_fds=True,
            )
        return cls(popen.pid, run_dir, timeout, notify, popen=popen)

    @classmethod
    def adopt(
        cls,
        pid: int,
        run_dir: Path,
        timeout: float | None = None,
        notify: threading.Event | None = None,
        elapsed: float = 0.0,
    ) -> TrialProcess:
        """A supervisor this emulator did not start (found by :func:`locate`), ``elapsed``
        seconds after it started (its timeout counts from then)."""
        return cls(pid, run_dir, timeout, notify, elapsed=elapsed)

    def _wait(self) -> None:
        # Popen.wait holds Popen's waitpid lock; Popen.poll() from other threads then returns
        # None until the child is reaped here.
        with contextlib.suppress(Exception):
            if self._popen is not None:
                self._popen.wait()
            else:
                wait_gone(self.pid)
        self.exited.set()
        if self._notify is not None:
            self._notify.set()

    def wait(self, timeout: float) -> None:
        """Sleep until the process ends or ``timeout`` seconds pass."""
        self.exited.wait(timeout)

    def poll(self) -> Outcome | None:
        if not self.exited.is_set():
            if (
                self.timeout is not None
                and not self._killed_for_timeout
                and time.monotonic() - self.started > self.timeout
            ):
                self._killed_for_timeout = True
                kill_group(self.pid, self._popen)
            return None
        kill_group(self.pid, None, grace=0)  # reap stragglers left in the group
        outcome = read_status(self.run_dir)
        if outcome is None and self._popen is not None and self._popen.returncode is not None:
            code = self._popen.returncode  # the supervisor was killed (SIGKILL) before writing
            outcome = Outcome(None, -code, False) if code < 0 else Outcome(code, None, False)
        if outcome is None:
            return Outcome(None, None, self._killed_for_timeout, lost=True)
        return replace(outcome, timed_out=self._killed_for_timeout)

    def kill(self) -> None:
        kill_group(self.pid, self._popen)


def status_file(run_dir: Path) -> Path:
    """Where the supervisor of a run writes how its command ended."""
    return run_dir / "exit_status.json"


def read_status(run_dir: Path) -> Outcome | None:
    """How a run's command ended, from its status file (None: no status written)."""
    try:
        data = json.loads(status_file(run_dir).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("signal"), int):
        return Outcome(None, data["signal"], False)
    if isinstance(data.get("exit_code"), int):
        return Outcome(data["exit_code"], None, False)
    if "error" in data:  # could not be started; the supervisor said why on stderr
        return Outcome(127, None, False)
    return None


def wait_gone(pid: int) -> None:
    """Block until process ``pid`` (not a child of this one) has ended."""
    start = proc_start(pid)
    if start is None:
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # pidfds need Linux 5.3; /proc does it too, a tenth of a second late
        while proc_start(pid) == start:
            time.sleep(0.1)
        return
    try:
        if proc_start(pid) != start:
            return  # it ended (and the pid was taken again) before the pidfd was opened
        poller = select.poll()
        poller.register(fd, select.POLLIN)  # readable once the process has terminated
        poller.poll()
    finally:
        os.close(fd)


def kill_group(
    pgid: int,
    proc: subprocess.Popen[bytes] | None,
    grace: float = GRACE_SECONDS,
    hard: bool = False,
) -> None:
    """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL it (``hard``:
    SIGKILL at once, so that nothing in it gets to act on a SIGTERM)."""
    try:
        os.killpg(pgid, signal.SIGKILL if hard else signal.SIGTERM)
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
    base: dict[str, str],
    extra: dict[str, str],
    python_bin: str | None,
    secrets: tuple[str, ...] = (),
) -> dict[str, str]:
    """A trial's environment: ``base`` (the emulator's) with ``extra`` over it, less the
    :data:`_SCRUBBED_ENV` names and every variable whose value holds one of ``secrets``."""
    env = dict(base)
    if python_bin:
        env["PATH"] = python_bin + os.pathsep + env.get("PATH", "")
    env.update(extra)
    secrets = tuple(s for s in secrets if s)
    return {
        k: v
        for k, v in env.items()
        if k not in _SCRUBBED_ENV and not any(s in v for s in secrets)
    }


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


def describe_exit(outcome: Outcome, run_dir: Path) -> str | None:
    """None for a clean exit, else the deciding line (:mod:`hydra_vertex.reasons`) with the exit
    code or signal, then the log's tail."""
    if outcome.lost:
        return (
            "the process is gone and left no exit status (it was killed together with its "
            "supervisor while the emulator was not watching)"
        )
    if not (outcome.timed_out or outcome.signal is not None or outcome.exit_code):
        return None
    return reasons.trial_reason(
        run_dir, exit_code=outcome.exit_code, signal=outcome.signal, timed_out=outcome.timed_out
    )


def parse_duration(text: str | None) -> float | None:
    """Seconds of a proto-JSON ``Duration`` (``"30s"``); None for none or zero."""
    if not text:
        return None
    return float(str(text).rstrip("s")) or None


class Storage(Protocol):
    """What the launcher needs of the store: the storage root and gs:// paths in it."""

    @property
    def storage_root(self) -> Path: ...

    def local_path(self, uri: str) -> Path: ...


class Launcher:
    """Turns a CustomJobSpec (proto-JSON dict) into a TrialProcess."""

    def __init__(
        self,
        storage: Storage,
        resolve_image: Callable[[str], Path | None],
        secrets: tuple[str, ...] = (),
    ) -> None:
        """``secrets``: the emulator's tokens, kept out of every trial's environment."""
        self.storage = storage
        self.resolve_image = resolve_image
        self.secrets = secrets

    def start(
        self,
        job_spec: dict[str, Any],
        run_dir: Path,
        job_id: str,
        trial_id: str | None = None,
        trial_args: list[str] | None = None,
        notify: threading.Event | None = None,
        devices: tuple[str, ...] | None = None,
        marker: str = "",
    ) -> TrialProcess:
        """``devices``: the GPUs lent to this process (``()``: none), None on a machine with no
        GPU (nothing is set; see :mod:`devices`). ``marker``: its :data:`MARKER_ENV`, stored
        with the job before this call, so that the process can be found again after a crash."""
        container = job_spec["workerPoolSpecs"][0]["containerSpec"]
        workdir = self.resolve_image(container.get("imageUri", ""))
        if workdir is None:
            raise RuntimeError(f"image {container.get('imageUri')!r} is not runnable locally")
        image = images.runtime(workdir)  # interpreter first on PATH, variables, Dockerfile
        argv = container_argv(container, image, trial_args or [])
        base_uri = (job_spec.get("baseOutputDirectory") or {}).get("outputUriPrefix", "")
        if base_uri.startswith("gs://"):
            base = self.storage.local_path(base_uri)
        else:
            base = run_dir / "output"
        out = base / trial_id if trial_id else base
        (run_dir / "metrics").mkdir(parents=True, exist_ok=True)
        extra = {**image.env, **{e["name"]: e.get("value", "") for e in container.get("env", [])}}
        extra.update(
            {
                OUTPUT_DIR_ENV: str(run_dir / "outputs"),  # Hydra's output dir: not in the image
                "CLOUD_ML_JOB_ID": job_id,
                "CLOUD_ML_HP_METRIC_FILE": str(metric_file(run_dir)),
                "AIP_MODEL_DIR": str(out / "model") + "/",
                "AIP_CHECKPOINT_DIR": str(out / "checkpoints") + "/",
                "AIP_TENSORBOARD_LOG_DIR": str(out / "logs") + "/",
                "HYDRA_VERTEX_STORAGE_ROOT": str(self.storage.storage_root),
            }
        )
        if trial_id:
            extra["CLOUD_ML_TRIAL_ID"] = trial_id
        if marker:
            extra[MARKER_ENV] = marker
        if devices is not None:  # the lent devices win over the container's own variables
            extra.update(device_env(devices, {**os.environ, **extra}))
        env = trial_env(dict(os.environ), extra, image.path, self.secrets)
        return TrialProcess.spawn(argv, image.cwd, env, run_dir, job_timeout(job_spec), notify)


def job_timeout(job_spec: Mapping[str, Any]) -> float | None:
    """A CustomJobSpec's ``scheduling.timeout`` in seconds (None: none)."""
    return parse_duration((job_spec.get("scheduling") or {}).get("timeout"))


def container_argv(
    container: dict[str, Any], image: images.Runtime, trial_args: list[str]
) -> list[str]:
    """The process's argv by Vertex's (Kubernetes') rules: ``command`` replaces the image's
    ``ENTRYPOINT`` (and drops its ``CMD``), ``args`` replace its ``CMD``; the trial's arguments
    come last. No command and no ENTRYPOINT is refused (at create; here if the image changed)."""
    command, args = container.get("command") or [], container.get("args") or []
    if command:
        head, tail = list(command), list(args)
    elif image.entrypoint:
        head, tail = list(image.entrypoint), list(args) if args else list(image.cmd or ())
    else:
        raise RuntimeError(
            "worker pool 0 has no container_spec.command and its image has no ENTRYPOINT"
        )
    return [*head, *tail, *trial_args]


def metric_file(run_dir: Path) -> Path:
    """Where a run's ``CLOUD_ML_HP_METRIC_FILE`` is (its own: trials never share one)."""
    return run_dir / "metrics" / "output.metrics"


def proc_start(pid: int) -> str | None:
    """The process start time from /proc (guards against pid reuse after a restart)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def new_marker(job_id: str, trial_id: str | None = None) -> str:
    """A process's :data:`MARKER_ENV`: ``<job id>/<trial id or "job">/<nonce>``."""
    return f"{job_id}/{trial_id or 'job'}/{secrets.token_hex(6)}"


def marked_processes() -> dict[str, list[int]]:
    """Marker -> the live processes (of this user) whose environment carries it."""
    needle = f"{MARKER_ENV}=".encode()
    out: dict[str, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                data = Path(entry.path, "environ").read_bytes()
            except OSError:  # gone, or another user's
                continue
            for var in data.split(b"\0"):
                if var.startswith(needle):
                    marker = var[len(needle) :].decode("utf-8", "replace")
                    out.setdefault(marker, []).append(int(entry.name))
                    break
    return out


def locate(
    marker: str, recorded: Mapping[str, Any] | None, found: Mapping[str, list[int]]
) -> int | None:
    """The live supervisor of the process started with ``marker``: the ``recorded``
    ``{"pid", "start"}`` if it is still that process, else the process carrying the marker that
    leads its own group (``found``: :func:`marked_processes`). None: it is gone."""
    if recorded:
        pid, start = int(recorded.get("pid") or 0), recorded.get("start")
        if pid > 0 and start is not None and proc_start(pid) == start:
            return pid
    for pid in found.get(marker, []):
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                return pid
    return None


def kill_marked(marker: str, found: Mapping[str, list[int]]) -> None:
    """Kill what is left of a process whose supervisor is gone: the groups of the processes
    that carry ``marker``."""
    for pid in found.get(marker, []):
        with contextlib.suppress(OSError):
            kill_group(os.getpgid(pid), None)


def kill_leftover(info: dict[str, Any], hard: bool = False) -> None:
    """Kill the group of a process recorded as ``{"pid", "start"}`` if it is still that one."""
    pid = int(info.get("pid", 0))
    current = proc_start(pid)
    # a vanished leader cannot have had its pid (= the group id) reused while the group lives
    if pid > 0 and (current is None or info.get("start") is None or current == info.get("start")):
        kill_group(pid, None, hard=hard)
