"""Job runners: a thread per stored job that carries it to its end. A custom job runs one process
(:class:`CustomJobRunner`); a tuning job runs the trial loop (``trial_loop``); a pipeline job runs
kfp.local (``pipelines``).

Policies of a custom job (kept here, in one place):

- Restart after the emulator died: a job that was running is not resumed. Its process group (if
  it still exists and is the one started) is killed and the job ends FAILED (code 10,
  "interrupted").
- Cancel: the process group is killed (SIGTERM, grace, SIGKILL) and the job ends CANCELLED with
  ``error.code = 1``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra_vertex import reasons
from hydra_vertex.emulator import executor
from hydra_vertex.emulator.devices import DeviceError, DevicePool, no_gpu_warning, requested
from hydra_vertex.emulator.store import Record, Store, now

# Process exits wake the runners at once (a waiter thread per process sets an event); this period
# only bounds how late cancel requests, timeouts and stopping rules are noticed.
POLL_SECONDS = 0.1
TERMINAL_JOB_STATES = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
CANCELLED = {"code": 1, "message": "CANCELED"}


class _AlreadyWarned(Exception):
    """The job already has this warning (aborts the store update)."""


class StoredJobRunner(threading.Thread):
    """A thread that carries one stored job (custom, tuning or pipeline) to its end."""

    collection = ""

    def __init__(self, store: Store, job_id: str) -> None:
        super().__init__(name=f"{self.collection}-{job_id}", daemon=True)
        self.store = store
        self.job_id = job_id
        self.stop_event = threading.Event()

    def update(self, fn: Callable[[Record], None]) -> Record:
        return self.store.update(self.collection, self.job_id, fn)

    def finish(self, state: str, error: dict[str, Any] | None = None, **fields: Any) -> None:
        """End the job in ``state`` (with ``error`` and other resource ``fields``)."""

        def fn(rec: Record) -> None:
            res = rec["resource"]
            res["state"] = state
            res["endTime"] = res["updateTime"] = now()
            if error:
                res["error"] = error
            res.update(fields)
            rec["internal"].pop("pid", None)

        self.update(fn)

    def interrupted(self, rec: Record, failed: str, what: str) -> bool:
        """After a restart: a job whose process was running is not resumed. Its group is killed
        (if it is still the one started) and the job ends ``failed`` (code 10). True if so."""
        if not rec["internal"].get("pid"):
            return False
        executor.kill_leftover(rec["internal"])
        why = f"interrupted: the emulator stopped while the {what} ran ({what}s are not resumed)"
        self.finish(failed, {"code": 10, "message": why})
        return True


class JobRunner(StoredJobRunner):
    """A custom or tuning job: its processes start through the Launcher, on devices lent by the
    emulator's :class:`~devices.DevicePool` (none given: a machine with no GPU)."""

    def __init__(
        self,
        store: Store,
        launcher: executor.Launcher,
        job_id: str,
        devices: DevicePool | None = None,
    ) -> None:
        super().__init__(store, job_id)
        self.launcher = launcher
        self.devices = devices if devices is not None else DevicePool()
        self.wake = threading.Event()  # set when a process of this job exits or devices free up
        self.owner = f"{self.collection}/{job_id}"  # this job's name in the device pool
        self._warned: set[str] = set()

    def claim_devices(
        self, owner: str, spec: dict[str, Any], per_trial: bool
    ) -> tuple[str, ...] | None:
        """The devices for one process of ``spec`` (worker pool 0), or None: not free yet (the
        owner waits in the pool's queue; :attr:`wake` is set when devices come back). On a machine
        with no GPU a process that asks for some runs without them: the job gets one warning.
        Raises :class:`~devices.DeviceError` when it asks for more than the machine has."""
        count, kind = requested(spec)
        granted = self.devices.acquire(owner, count, self.wake)
        if count and not self.devices.size:
            self.warn(no_gpu_warning(count, kind, per_trial, self.devices.source or "--gpus"))
        return granted

    def launch_devices(self, granted: tuple[str, ...]) -> tuple[str, ...] | None:
        """What the Launcher gets: the lent devices, or None on a machine with no GPU."""
        return granted if self.devices.size else None

    def warn(self, text: str) -> None:
        """One warning of the job (the same text again is dropped): kept on the stored resource
        (``_warnings``, internal: the API does not render it; the console and the emulator's
        ``/emulator/v1`` details show it) and written to the job's log (:meth:`log_path`)."""
        if text in self._warned:
            return
        self._warned.add(text)

        def fn(rec: Record) -> None:
            warnings = rec["resource"].setdefault("_warnings", [])
            if text in warnings:  # warned before a restart
                raise _AlreadyWarned
            warnings.append(text)

        try:
            self.update(fn)
        except _AlreadyWarned:
            return
        path = self.log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"hydra-vertex emulator: {text}\n")

    def log_path(self) -> Path:
        """The job's log: a custom job's ``stderr.log``; a tuning job's ``emulator.log`` beside
        its trials' directories."""
        name = "stderr.log" if self.collection == "customJobs" else "emulator.log"
        return self.store.run_dir(self.job_id) / name

    def set_running(self) -> None:
        def fn(rec: Record) -> None:
            res = rec["resource"]
            if res.get("state") in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING"):
                res["state"] = "JOB_STATE_RUNNING"
                res["startTime"] = res["updateTime"] = now()

        self.update(fn)

    def cancel_requested(self) -> bool:
        rec = self.store.get(self.collection, self.job_id)
        return rec is None or rec["resource"].get("state") == "JOB_STATE_CANCELLING"


class CustomJobRunner(JobRunner):
    collection = "customJobs"

    def run(self) -> None:
        rec = self.store.get(self.collection, self.job_id)
        if rec is None or rec["resource"].get("state") in TERMINAL_JOB_STATES:
            return
        run_dir = self.store.run_dir(self.job_id)
        if self.interrupted(rec, "JOB_STATE_FAILED", "job"):
            return
        try:
            self._run(rec, run_dir)
        finally:
            self.devices.release(self.owner)

    def _run(self, rec: Record, run_dir: Path) -> None:
        spec = rec["resource"]["jobSpec"]
        while True:  # PENDING until its devices are free (as on Vertex until its machine is)
            if self.cancel_requested():
                self.finish("JOB_STATE_CANCELLED", CANCELLED)
                return
            if self.stop_event.is_set():
                return
            self.wake.clear()
            try:
                granted = self.claim_devices(self.owner, spec, per_trial=False)
            except DeviceError as e:
                self.finish("JOB_STATE_FAILED", {"code": 9, "message": f"worker pool 0 {e}"})
                return
            if granted is not None:
                break
            self.wake.wait(POLL_SECONDS)
        try:
            proc = self.launcher.start(
                spec, run_dir, self.job_id, devices=self.launch_devices(granted)
            )
        except Exception as e:
            self.finish("JOB_STATE_FAILED", {"code": 9, "message": str(e)})
            return

        def started(r: Record) -> None:
            r["internal"].update(pid=proc.pid, start=executor.proc_start(proc.pid))
            if self.devices.size:
                r["resource"]["_devices"] = list(granted)

        self.update(started)
        self.set_running()
        try:
            while True:
                outcome = proc.poll()
                if outcome is not None:
                    break
                if self.stop_event.is_set():
                    return  # emulator stopping: the process group is killed in finally
                if self.cancel_requested():
                    proc.kill()
                    self.finish("JOB_STATE_CANCELLED", CANCELLED)
                    return
                proc.wait(POLL_SECONDS)
            reason = executor.describe_exit(outcome, run_dir)  # finish() forgets the pid
            if reason is None:
                self.finish("JOB_STATE_SUCCEEDED")
            else:
                self.finish(
                    "JOB_STATE_FAILED",
                    {
                        "code": 13,
                        "message": f"The replica workerpool0-0 {reasons.first_line(reason)}; "
                        f"its log: {run_dir / 'stderr.log'}",
                    },
                )
        finally:
            proc.kill()
