"""Job runners: a thread per stored job that carries it to its end. A custom job runs one process
(:class:`CustomJobRunner`); a tuning job runs the trial loop (``trial_loop``); a pipeline job runs
kfp.local (``pipelines``).

Policies of every job (kept here, in one place):

- A job never hangs: an exception in its runner (a bug, a store write that fails) stops its
  processes, gives back its devices and ends the job FAILED with ``error.code = 13`` (INTERNAL)
  and the error in ``error.message``; a job being cancelled ends CANCELLED instead. The emulator
  logs one line, the traceback goes to the job's ``emulator.log``.
- Cancel: the API's cancel wakes the runner (:attr:`StoredJobRunner.cancel_event`) and the stored
  CANCELLING state is read too; the processes are killed and the job ends CANCELLED with
  ``error.code = 1``. A job found CANCELLING after a restart ends CANCELLED the same way.

Restart of a custom job after the emulator died (the trial loop does the same for its trials):
its process carries a marker (:data:`executor.MARKER_ENV`, stored before it starts), so it is
found again and re-adopted if it still runs, or judged from the exit status its supervisor left if
it ended while the emulator was down. One that is gone without a status (it never started, or it
was killed) runs again. A graceful stop of the emulator kills it, and the next start runs it again.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra_vertex import reasons
from hydra_vertex.emulator import executor, fault_points
from hydra_vertex.emulator.devices import DeviceError, DevicePool, no_gpu_warning, requested
from hydra_vertex.emulator.store import Record, Store, now

log = logging.getLogger("hydra_vertex.emulator")

# Process exits wake the runners at once (a waiter thread per process sets an event); this period
# only bounds how late timeouts and stopping rules are noticed.
POLL_SECONDS = 0.1
TERMINAL_JOB_STATES = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
CANCELLED = {"code": 1, "message": "CANCELED"}
INTERNAL = 13  # google.rpc.Code.INTERNAL


class _AlreadyWarned(Exception):
    """The job already has this warning (aborts the store update)."""


def elapsed_since(stamp: str | None) -> float:
    """Seconds since an RFC 3339 resource timestamp (0 when unknown)."""
    try:
        return max(0.0, time.time() - datetime.fromisoformat(str(stamp)).timestamp())
    except ValueError:
        return 0.0


class StoredJobRunner(threading.Thread):
    """A thread that carries one stored job (custom, tuning or pipeline) to its end: subclasses
    implement :meth:`carry` (and :meth:`cleanup`); :meth:`run` makes sure the job ends."""

    collection = ""
    terminal_states: tuple[str, ...] = TERMINAL_JOB_STATES
    cancelling_state = "JOB_STATE_CANCELLING"
    cancelled_state = "JOB_STATE_CANCELLED"
    failed_state = "JOB_STATE_FAILED"

    def __init__(self, store: Store, job_id: str) -> None:
        super().__init__(name=f"{self.collection}-{job_id}", daemon=True)
        self.store = store
        self.job_id = job_id
        self.stop_event = threading.Event()  # the emulator is stopping
        self.cancel_event = threading.Event()  # the API cancelled the job
        self.wake = threading.Event()  # set when a process of this job exits, devices free up,
        # or the job is cancelled

    def run(self) -> None:
        try:
            self.carry()
        except Exception as e:  # a job never hangs: whatever went wrong, it ends
            self.crashed(e)

    def carry(self) -> None:
        """Carry the job to its end (or until :attr:`stop_event`)."""
        raise NotImplementedError

    def cleanup(self, why: str) -> None:
        """Stop the job's processes and give back its devices after :meth:`carry` failed
        (``why``: the reason its trials get). Best effort; never raises."""

    def crashed(self, error: Exception) -> None:
        """End the job after its runner failed: FAILED (INTERNAL), or CANCELLED if it was being
        cancelled, after :meth:`cleanup`. Logs one line; the traceback goes to the job's log."""
        what = f"{type(error).__name__}: {error}"
        log.error(
            "hydra-vertex emulator: %s %s failed: internal error: %s",
            self.collection,
            self.job_id,
            what,
        )
        where = self._save_traceback(error)
        try:
            self.cleanup("stopped: the job failed (internal error in the emulator)")
        except Exception as e:  # pragma: no cover - cleanup is best effort already
            log.debug("cleanup of %s failed: %s", self.job_id, e)
        try:
            rec = self.store.get(self.collection, self.job_id)
            if rec is None or rec["resource"].get("state") in self.terminal_states:
                return
            if self.cancel_requested():
                self.finish(self.cancelled_state, CANCELLED)
                return
            detail = f" (traceback in {where})" if where else ""
            message = f"internal error in the emulator: {what}{detail}"
            self.finish(self.failed_state, {"code": INTERNAL, "message": message})
        except Exception as e:
            log.error(
                "hydra-vertex emulator: %s %s: its end could not be stored either: %s: %s",
                self.collection,
                self.job_id,
                type(e).__name__,
                e,
            )

    def _save_traceback(self, error: Exception) -> Path | None:
        try:
            path = self.store.run_dir(self.job_id) / "emulator.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write("hydra-vertex emulator: internal error in the job's runner:\n")
                f.write("".join(traceback.format_exception(error)))
            return path
        except Exception:
            return None

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
            for key in ("pid", "start", "marker"):
                rec["internal"].pop(key, None)

        self.update(fn)

    def cancel_requested(self) -> bool:
        """Whether the job is being cancelled (or is gone). Cheap enough to ask before every
        process start: the API's cancel sets :attr:`cancel_event`; the stored state covers a
        cancel from before a restart."""
        if self.cancel_event.is_set():
            return True
        rec = self.store.get(self.collection, self.job_id)
        if rec is None or rec["resource"].get("state") == self.cancelling_state:
            self.cancel_event.set()
            return True
        return False


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
        self.owner = f"{self.collection}/{job_id}"  # this job's name in the device pool
        self._warned: set[str] = set()

    @classmethod
    def devices_in_use(cls, job_id: str, rec: Record) -> dict[str, list[str]]:
        """Device-pool owner -> the devices its process held when the record was stored (a
        restarted emulator reserves them again before any job asks for devices)."""
        return {}

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


class CustomJobRunner(JobRunner):
    collection = "customJobs"

    def __init__(
        self,
        store: Store,
        launcher: executor.Launcher,
        job_id: str,
        devices: DevicePool | None = None,
    ) -> None:
        super().__init__(store, launcher, job_id, devices)
        self.proc: executor.TrialProcess | None = None

    @classmethod
    def devices_in_use(cls, job_id: str, rec: Record) -> dict[str, list[str]]:
        held = rec["resource"].get("_devices") or []
        if held and rec["internal"].get("marker"):
            return {f"{cls.collection}/{job_id}": list(held)}
        return {}

    def carry(self) -> None:
        rec = self.store.get(self.collection, self.job_id)
        if rec is None or rec["resource"].get("state") in self.terminal_states:
            return
        run_dir = self.store.run_dir(self.job_id)
        try:
            if rec["internal"].get("marker") or rec["internal"].get("pid"):
                self.proc = self._resume(rec, run_dir)  # after a restart
                if self.proc is None and self._ended():
                    return
            if self.proc is None:
                self.proc = self._start(rec, run_dir)
            if self.proc is not None:
                self._follow(self.proc, run_dir)
        finally:
            if self.proc is not None:
                self.proc.kill()
            self.devices.release(self.owner)

    def cleanup(self, why: str) -> None:
        if self.proc is not None:
            self.proc.kill()
        self.devices.release(self.owner)

    def _ended(self) -> bool:
        rec = self.store.get(self.collection, self.job_id)
        return rec is None or rec["resource"].get("state") in self.terminal_states

    def _resume(self, rec: Record, run_dir: Path) -> executor.TrialProcess | None:
        """After a restart: the job's process re-adopted (still running), or None with the job
        ended (it ended while the emulator was down, or the job is being cancelled) or to be
        run again (gone without an exit status)."""
        internal, res = rec["internal"], rec["resource"]
        marker = internal.get("marker")
        if not marker:  # stored by an emulator that did not mark its processes
            executor.kill_leftover(internal)
            why = "interrupted: the emulator stopped while the job ran (its process was unmarked)"
            self.finish(self.failed_state, {"code": 10, "message": why})
            return None
        found = executor.marked_processes()
        pid = executor.locate(marker, internal, found)
        if self.cancel_requested():
            if pid is not None:
                executor.kill_group(pid, None)
            executor.kill_marked(marker, found)
            self.finish(self.cancelled_state, CANCELLED)
            return None
        if pid is not None:
            self.devices.adopt(self.owner, res.get("_devices") or [])
            timeout = executor.job_timeout(res["jobSpec"])
            elapsed = elapsed_since(res.get("startTime"))
            return executor.TrialProcess.adopt(pid, run_dir, timeout, self.wake, elapsed)
        executor.kill_marked(marker, found)
        outcome = executor.read_status(run_dir)
        if outcome is not None:  # it ended while the emulator was down
            self._end(outcome, run_dir)
            return None
        self._forget_process()  # it never started, or was killed: it runs again
        return None

    def _forget_process(self) -> None:
        def fn(r: Record) -> None:
            for key in ("pid", "start", "marker"):
                r["internal"].pop(key, None)

        self.update(fn)

    def _start(self, rec: Record, run_dir: Path) -> executor.TrialProcess | None:
        """Wait for the job's devices and start its process (None: the job ended, or the
        emulator is stopping)."""
        spec = rec["resource"]["jobSpec"]
        while True:  # PENDING until its devices are free (as on Vertex until its machine is)
            if self.cancel_requested():
                self.finish(self.cancelled_state, CANCELLED)
                return None
            if self.stop_event.is_set():
                return None
            self.wake.clear()
            try:
                granted = self.claim_devices(self.owner, spec, per_trial=False)
            except DeviceError as e:
                self.finish(self.failed_state, {"code": 9, "message": f"worker pool 0 {e}"})
                return None
            if granted is not None:
                break
            self.wake.wait(POLL_SECONDS)
        marker = executor.new_marker(self.job_id)
        self.update(lambda r: r["internal"].update(marker=marker))  # before the process exists
        try:
            proc = self.launcher.start(
                spec,
                run_dir,
                self.job_id,
                notify=self.wake,
                devices=self.launch_devices(granted),
                marker=marker,
            )
        except Exception as e:
            self.finish(self.failed_state, {"code": 9, "message": str(e)})
            return None
        self.proc = proc
        fault_points.reach("process-started")

        def started(r: Record) -> None:
            r["internal"].update(pid=proc.pid, start=executor.proc_start(proc.pid))
            if self.devices.size:
                r["resource"]["_devices"] = list(granted)

        self.update(started)
        self.set_running()
        return proc

    def _follow(self, proc: executor.TrialProcess, run_dir: Path) -> None:
        while True:
            outcome = proc.poll()
            if outcome is not None:
                break
            if self.stop_event.is_set():  # emulator stopping: the next start runs it again
                proc.kill()
                self._forget_process()
                return
            if self.cancel_requested():
                fault_points.reach("cancelling")
                proc.kill()
                self.finish(self.cancelled_state, CANCELLED)
                return
            self.wake.clear()
            self.wake.wait(POLL_SECONDS)  # set by the process's end and by a cancel
        self._end(outcome, run_dir)

    def _end(self, outcome: executor.Outcome, run_dir: Path) -> None:
        reason = executor.describe_exit(outcome, run_dir)  # finish() forgets the process
        if reason is None:
            self.finish("JOB_STATE_SUCCEEDED")
            return
        self.finish(
            self.failed_state,
            {
                "code": INTERNAL,
                "message": f"The replica workerpool0-0 {reasons.first_line(reason)}; "
                f"its log: {run_dir / 'stderr.log'}",
            },
        )
