"""The process backend: a job's or a trial's container run as a local process.

- :class:`Launcher` turns a ``CustomJobSpec`` (proto-JSON) into a process, as a container would
  run: :func:`container_argv` (``command``/``args`` over the image's ``ENTRYPOINT``/``CMD``, then
  the trial's arguments; an argv list, no shell) in the image's working directory, with the
  Vertex environment (``CLOUD_ML_*``, ``AIP_*``: local paths under the storage root, what
  ``/gcs/...`` is on Vertex).
- :class:`TrialProcess`: one directory per run, logs to files, its own process group (a kill
  reaches grandchildren), status from the exit code; :func:`describe_exit` says how it ended.
- :func:`kill_leftover`: after a restart, the group of a recorded process is killed if it is
  still the one started (pid and ``/proc`` start time).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hydra_vertex import images, reasons
from hydra_vertex.emulator.devices import device_env
from hydra_vertex.overrides import OUTPUT_DIR_ENV

GRACE_SECONDS = 5.0
# Variables that must never reach a trial (the emulator's bearer token above all); a variable
# whose value holds one of the emulator's tokens (API or console) is dropped too, whatever its name.
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
    ) -> TrialProcess:
        """``devices``: the GPUs lent to this process (``()``: none), None on a machine with no
        GPU (nothing is set; see :mod:`devices`)."""
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
        if devices is not None:  # the lent devices win over the container's own variables
            extra.update(device_env(devices, {**os.environ, **extra}))
        env = trial_env(dict(os.environ), extra, image.path, self.secrets)
        timeout = parse_duration((job_spec.get("scheduling") or {}).get("timeout"))
        return TrialProcess(argv, image.cwd, env, run_dir, timeout=timeout, notify=notify)


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


def kill_leftover(info: dict[str, Any]) -> None:
    """Kill the group of a process recorded as ``{"pid", "start"}`` if it is still that one."""
    pid = int(info.get("pid", 0))
    current = proc_start(pid)
    # a vanished leader cannot have had its pid (= the group id) reused while the group lives
    if pid > 0 and (current is None or info.get("start") is None or current == info.get("start")):
        kill_group(pid, None)
