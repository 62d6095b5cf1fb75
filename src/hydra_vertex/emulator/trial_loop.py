"""The tuning job's loop: reap finished trials, apply the policies, refill free slots.

Each turn (woken by a trial's exit, else every ``POLL_SECONDS``):

1. reap: a trial whose process ended is judged from its exit and its metric file
   (:func:`metrics.judge`) and ends SUCCEEDED or INFEASIBLE;
2. stopping: the study's automated stopping policy (:mod:`stopping`) may stop running trials
   (SUCCEEDED with what they reported; ``_early_stopped`` and ``_saved`` on the stored trial);
3. cancel: a CANCELLING job stops its trials and ends CANCELLED (``error.code = 1``);
4. failures: the failed-trial budget (:mod:`failures`) may fail the job;
5. refill: free slots get new trials from the suggester, up to ``max_trial_count``, once the
   emulator's device pool lends the next trial the GPUs it asks for (:mod:`devices`; until then
   the slot waits, so ``parallel_trial_count`` is an upper bound);
6. done: with nothing running and nothing left to ask, the job ends SUCCEEDED if any trial did,
   else FAILED.

The parameters, the goal and the measurement selection come from the one parameter model,
:meth:`SearchSpace.from_study_spec`. Processes belong to :mod:`executor`; the stored trials to
:class:`TrialBook`.

Cancel is honoured between any two trial starts (:meth:`~runners.StoredJobRunner.cancel_requested`
is asked before each one).

Restart after the emulator died: trials outlive it (their own sessions) and are not lost. Each
trial is stored ACTIVE with a marker (:data:`executor.MARKER_ENV`) before its process starts, so
no process runs unrecorded: on restart a trial still running is re-adopted (found by its stored
pid and start time, else by its marker) and waited for, its devices reserved again; one that ended
while the emulator was down is judged from the exit status its supervisor left and its metric
file, as if it had been watched. Only a trial whose process is gone without an exit status (it
never started, or it was killed) ends INFEASIBLE "interrupted ..."; it counts neither as a failure
nor towards ``max_trial_count`` (``_replaced``): the job runs another trial in its place. A graceful
stop of the emulator kills the running trials, which end the same way.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from hydra_vertex.emulator import executor, fault_points, metrics
from hydra_vertex.emulator.devices import DeviceError, DevicePool
from hydra_vertex.emulator.failures import FailurePolicy, Finished
from hydra_vertex.emulator.runners import (
    CANCELLED,
    POLL_SECONDS,
    JobRunner,
    elapsed_since,
)
from hydra_vertex.emulator.stopping import Clock, Curve, StoppingPolicy, policy_for, savings
from hydra_vertex.emulator.store import Record, Store, now
from hydra_vertex.search_space import SearchSpace

COLLECTION = "hyperparameterTuningJobs"
_LIVE = ("ACTIVE", "REQUESTED", "STOPPING")
INTERRUPTED = (
    "interrupted: the emulator stopped while the trial ran and its process is gone without an "
    "exit status (not counted: another trial runs in its place)"
)


class TrialBook:
    """The stored trials of one tuning job; every change is one atomic store update."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store = store
        self.job_id = job_id

    def record(self) -> Record:
        rec = self.store.get(COLLECTION, self.job_id)
        if rec is None:
            raise KeyError(self.job_id)
        return rec

    def trials(self) -> list[dict[str, Any]]:
        return list(self.record()["resource"].get("trials", []))

    def add(self, trial: dict[str, Any]) -> None:
        self.store.update(
            COLLECTION, self.job_id, lambda r: r["resource"].setdefault("trials", []).append(trial)
        )

    def started(self, tid: str, pid: int) -> None:
        """Remember a trial's process (killed after a restart if it is still that one)."""
        info = {"pid": pid, "start": executor.proc_start(pid)}
        self.store.update(
            COLLECTION,
            self.job_id,
            lambda r: r["internal"].setdefault("pids", {}).update({tid: info}),
        )

    def set(self, tid: str, **fields: Any) -> None:
        def fn(rec: Record) -> None:
            for t in rec["resource"]["trials"]:
                if t["id"] == tid:
                    t.update(fields)
            rec["internal"].get("pids", {}).pop(tid, None)
            rec["resource"]["updateTime"] = now()

        self.store.update(COLLECTION, self.job_id, fn)

    def end(self, tid: str, end: metrics.TrialEnd, metric: str, **extra: Any) -> None:
        fields: dict[str, Any] = {
            "endTime": now(),
            "measurements": metrics.measurements(end.points, metric),
        }
        if end.final is not None:
            final = metrics.measurement(end.final, metric)
            fields.update(state="SUCCEEDED", finalMeasurement=final)
        else:
            fields.update(state="INFEASIBLE", infeasibleReason=end.reason)
        self.set(tid, **fields, **extra)

    def stop_uncounted(self, tid: str, why: str, replaced: bool = False) -> None:
        """End a trial that did not fail on its own (it does not count as a failure); a
        ``replaced`` one does not count towards ``max_trial_count`` either."""
        extra = {"_replaced": True} if replaced else {}
        self.set(
            tid, state="INFEASIBLE", endTime=now(), infeasibleReason=why, _uncounted=True, **extra
        )


def counted(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials that count towards ``max_trial_count`` (all but the interrupted ones)."""
    return [t for t in trials if not t.get("_replaced")]


def finished_trials(trials: list[dict[str, Any]]) -> list[Finished]:
    """The trials that finished on their own, in the order they finished."""
    done = [
        t
        for t in trials
        if t.get("state") == "SUCCEEDED"
        or (t.get("state") == "INFEASIBLE" and not t.get("_uncounted"))
    ]
    done.sort(key=lambda t: (str(t.get("endTime", "")), int(t["id"])))
    return [
        Finished(t["id"], t["state"] == "SUCCEEDED", t.get("infeasibleReason", "")) for t in done
    ]


def trial_args(params: dict[str, Any], space: SearchSpace) -> list[str]:
    """The trial's command-line arguments, as Vertex passes them: ``--<parameter id>=<value>``."""
    kinds = {pid: p.kind for pid, p in space.by_parameter_id().items()}
    return [f"--{k}={_format_value(v, kinds.get(k, 'DOUBLE'))}" for k, v in params.items()]


def _format_value(value: Any, kind: str) -> str:
    if kind == "INTEGER":
        return str(int(float(value)))
    if kind == "CATEGORICAL":
        return str(value)
    return repr(float(value))


class TuningJobRunner(JobRunner):
    collection = COLLECTION

    def __init__(
        self,
        store: Store,
        launcher: executor.Launcher,
        job_id: str,
        devices: DevicePool | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(store, launcher, job_id, devices)
        self.clock = clock
        self.book = TrialBook(store, job_id)
        self.running: dict[str, executor.TrialProcess] = {}
        self.started_at: dict[str, float] = {}  # trial id -> clock reading at its start
        self.started_wall: dict[str, float] = {}  # trial id -> time.time() at its start
        self.space: SearchSpace  # the job's study spec, read when the loop starts
        self.maximize = False
        self.timeout: float | None = None  # each trial's scheduling.timeout

    @classmethod
    def devices_in_use(cls, job_id: str, rec: Record) -> dict[str, list[str]]:
        return {
            f"{cls.collection}/{job_id}/{t['id']}": list(t["_devices"])
            for t in rec["resource"].get("trials", [])
            if t.get("state") in _LIVE and t.get("_devices") and t.get("_marker")
        }

    def carry(self) -> None:
        from google.cloud.aiplatform_v1.types import StudySpec

        from hydra_vertex.emulator import suggester

        rec = self.store.get(self.collection, self.job_id)
        if rec is None or rec["resource"].get("state") in self.terminal_states:
            return
        res = rec["resource"]
        spec = StudySpec.from_json(json.dumps(res["studySpec"]), ignore_unknown_fields=True)
        self.space = SearchSpace.from_study_spec(spec, source=f"{res['name']} study_spec")
        self.maximize = self.space.direction == "maximize"
        threading.Thread(target=suggester.warm_up, args=(spec,), daemon=True).start()
        max_trials = int(res.get("maxTrialCount") or 1)
        parallel = max(1, int(res.get("parallelTrialCount") or 1))
        failures = FailurePolicy(int(res.get("maxFailedTrialCount") or 0), max_trials, parallel)
        stopping = policy_for(spec, self.maximize, self.clock)
        seed = int(rec["internal"].get("seed", 0))
        job_spec = res.get("trialJobSpec") or {}
        self.timeout = executor.job_timeout(job_spec)
        self._reconcile_after_restart()
        self.set_running()
        exhausted = False
        try:
            while not self.stop_event.is_set():
                self.wake.clear()  # a trial ending from here on makes the wait below return
                self._reap()
                trials = self.book.trials()
                if stopping is not None and self._apply(stopping, trials):
                    trials = self.book.trials()
                if self.cancel_requested():
                    fault_points.reach("cancelling")
                    self._stop_all("cancelled with the job")
                    self.finish(self.cancelled_state, CANCELLED)
                    return
                error = failures.verdict(finished_trials(trials))
                if error is not None:
                    self._stop_all("stopped: the job failed")
                    self.finish(self.failed_state, {"code": 9, "message": error})
                    return
                while (
                    len(self.running) < parallel
                    and len(counted(trials)) < max_trials
                    and not exhausted
                    and not self.cancel_requested()  # honoured between any two starts
                ):
                    tid = str(len(trials) + 1)
                    try:
                        granted = self.claim_devices(self._owner(tid), job_spec, per_trial=True)
                    except DeviceError as e:
                        self._stop_all("stopped: the job failed")
                        message = f"trial_job_spec.worker_pool_specs[0] {e}"
                        self.finish(self.failed_state, {"code": 9, "message": message})
                        return
                    if granted is None:
                        break  # devices busy: wait for a trial (of any job) to end
                    past = [
                        suggester.PastTrial(
                            {p["parameterId"]: p["value"] for p in t.get("parameters", [])},
                            metrics.final_value(t, self.space.metric),
                            pending=t.get("state") == "ACTIVE",
                        )
                        for t in trials
                    ]
                    # the job's budget in asks: its max_trial_count plus the replaced trials
                    budget = max_trials + len(trials) - len(counted(trials))
                    params = suggester.suggest(spec, past, seed=seed, budget=budget)
                    if params is None or self.cancel_event.is_set():
                        self.devices.release(self._owner(tid))
                        exhausted = params is None
                        break
                    self._start_trial(tid, params, job_spec, granted)
                    trials = self.book.trials()
                if not self.running and (len(counted(trials)) >= max_trials or exhausted):
                    self._done(trials)
                    return
                self.wake.wait(POLL_SECONDS)
        finally:
            if self.stop_event.is_set():  # the emulator stops: its next start replaces them
                self._stop_all(INTERRUPTED, replaced=True)
            if not self.running:  # else the job failed: cleanup() stops them first
                self.devices.release_all(self._owner(""))

    def cleanup(self, why: str) -> None:
        procs, self.running = list(self.running.values()), {}
        for proc in procs:
            proc.kill()
        self.devices.release_all(self._owner(""))
        for t in self.book.trials():
            if t.get("state") in _LIVE:
                self.book.stop_uncounted(t["id"], why)

    # -- steps -----------------------------------------------------------------------------------
    def _reap(self) -> None:
        for tid, proc in list(self.running.items()):
            outcome = proc.poll()
            if outcome is None:
                continue
            del self.running[tid]
            self.devices.release(self._owner(tid))
            self._judge(tid, outcome)

    def _judge(self, tid: str, outcome: executor.Outcome) -> None:
        """End a trial whose process ended: from its exit and its metric file; one gone without
        an exit status is interrupted (replaced)."""
        if outcome.lost:
            self.book.stop_uncounted(tid, INTERRUPTED, replaced=True)
            return
        run_dir = self.store.run_dir(self.job_id, tid)
        points, seen = metrics.read_metric_file(
            executor.metric_file(run_dir), self.space.metric, self.started_wall.get(tid)
        )
        end = metrics.judge(
            executor.describe_exit(outcome, run_dir),
            points,
            seen,
            self.space.metric,
            self.space.measurement_selection,
            self.maximize,
        )
        self.book.end(tid, end, self.space.metric)
        fault_points.reach("trial-ended")

    def _apply(self, policy: StoppingPolicy, trials: list[dict[str, Any]]) -> bool:
        """Stop the running trials the policy stops: they end SUCCEEDED with what they reported.
        True if it stopped any."""
        stopped = False
        completed = [
            Curve(
                t["id"],
                tuple(metrics.stored_points(t)),
                final=metrics.final_value(t, self.space.metric),
            )
            for t in trials  # the trials that ran their course (not those stopped early)
            if t.get("state") == "SUCCEEDED"
            and t.get("measurements")
            and not t.get("_early_stopped")
        ]
        for tid, proc in list(self.running.items()):
            path = executor.metric_file(self.store.run_dir(self.job_id, tid))
            points = metrics.finite(
                metrics.read_metric_file(path, self.space.metric, self.started_wall.get(tid))[0]
            )
            curve = Curve(tid, tuple(points), self.started_at.get(tid, 0.0))
            why = policy.should_stop(curve, completed) if points else None
            if why is None:
                continue
            proc.kill()
            del self.running[tid]
            self.devices.release(self._owner(tid))
            final = metrics.select_measurement(
                points, self.space.measurement_selection, self.maximize
            )
            saved = savings(curve, completed)
            self.book.end(
                tid,
                metrics.TrialEnd(points, final),
                self.space.metric,
                _early_stopped=why,
                _saved={"steps": saved.steps, "seconds": saved.seconds},
            )
            stopped = True
        return stopped

    def _owner(self, tid: str) -> str:
        """A trial's name in the device pool (``""``: the prefix of all this job's trials)."""
        return f"{self.owner}/{tid}"

    def _start_trial(
        self, tid: str, params: dict[str, Any], job_spec: dict[str, Any], granted: tuple[str, ...]
    ) -> None:
        marker = executor.new_marker(self.job_id, tid)
        trial: dict[str, Any] = {
            "id": tid,
            "state": "ACTIVE",
            "startTime": now(),
            "parameters": [{"parameterId": k, "value": v} for k, v in params.items()],
            "_marker": marker,  # internal: finds the process again after a crash
        }
        if self.devices.size:
            trial["_devices"] = list(granted)  # internal: not rendered by the API
        self.book.add(trial)  # stored before its process exists: none runs unrecorded
        fault_points.reach("trial-stored")
        self.started_wall[tid] = time.time()
        try:
            proc = self.launcher.start(
                job_spec,
                self.store.run_dir(self.job_id, tid),
                self.job_id,
                tid,
                trial_args(params, self.space),
                notify=self.wake,
                devices=self.launch_devices(granted),
                marker=marker,
            )
        except Exception as e:
            self.devices.release(self._owner(tid))
            self.book.set(
                tid, state="INFEASIBLE", endTime=now(), infeasibleReason=f"could not start: {e}"
            )
            return
        self.running[tid] = proc
        self.started_at[tid] = self.clock()
        fault_points.reach("process-started")
        self.book.started(tid, proc.pid)

    def _done(self, trials: list[dict[str, Any]]) -> None:
        if any(t.get("state") == "SUCCEEDED" for t in trials):
            self.finish("JOB_STATE_SUCCEEDED")
            return
        reasons = [t.get("infeasibleReason", "") for t in trials if t.get("state") == "INFEASIBLE"]
        last = reasons[-1] if reasons else "none"
        self.finish(
            "JOB_STATE_FAILED", {"code": 9, "message": f"no trial succeeded. Last reason: {last}"}
        )

    def _stop_all(self, why: str, replaced: bool = False) -> None:
        procs, self.running = list(self.running.items()), {}
        for tid, proc in procs:
            proc.kill()
            self.devices.release(self._owner(tid))
        for tid, _ in procs:
            self.book.stop_uncounted(tid, why, replaced)

    def _reconcile_after_restart(self) -> None:
        """Re-adopt the trials still running, judge those that ended while the emulator was
        down, interrupt those gone without an exit status (see the module docstring)."""
        rec = self.book.record()
        live = [t for t in rec["resource"].get("trials", []) if t.get("state") in _LIVE]
        if not live:
            return
        found = executor.marked_processes()
        pids = rec["internal"].get("pids", {})
        for t in live:
            tid, marker, info = t["id"], t.get("_marker"), pids.get(t["id"])
            if not marker:  # stored by an emulator that did not mark its processes
                if info:
                    executor.kill_leftover(info)
                self.book.stop_uncounted(tid, INTERRUPTED, replaced=True)
                continue
            elapsed = elapsed_since(t.get("startTime"))
            self.started_wall[tid] = time.time() - elapsed
            self.started_at[tid] = self.clock() - elapsed
            run_dir = self.store.run_dir(self.job_id, tid)
            pid = executor.locate(marker, info, found)
            if pid is None:  # ended while the emulator was down, or never started
                executor.kill_marked(marker, found)
                outcome = executor.read_status(run_dir)
                self._judge(tid, outcome or executor.Outcome(None, None, False, lost=True))
                continue
            self.devices.adopt(self._owner(tid), t.get("_devices") or [])
            self.running[tid] = executor.TrialProcess.adopt(
                pid, run_dir, self.timeout, self.wake, elapsed
            )
