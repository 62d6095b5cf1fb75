"""Job runners: a custom job runs one process; a tuning job runs trials, refilling free slots.

Policies (kept here, in one place, so they can change):

- ``max_failed_trial_count`` 0 means "the service decides": here the job fails only when every
  trial it may run (``max_trial_count``) has failed. N > 0: the job fails once N trials have failed.
- A job that ends with no SUCCEEDED trial is FAILED.
- Restart after the emulator died: a trial that was ACTIVE is not resumed. Its process group (if it
  still exists and is the one we started) is killed, the trial ends INFEASIBLE with
  ``infeasible_reason`` "interrupted ...", it does not count as a failure, and it does count
  towards ``max_trial_count``. The job then carries on.
- Cancel: the runner kills every running trial (group SIGTERM, grace, SIGKILL), marks them
  INFEASIBLE ("cancelled"), and ends the job CANCELLED with ``error.code = 1``.
- ``AIP_MODEL_DIR`` etc. are local paths under the storage root (what ``/gcs/...`` is on Vertex).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hydra_vertex import images, reasons
from hydra_vertex.emulator import executor
from hydra_vertex.emulator.store import Record, Store
from hydra_vertex.overrides import OUTPUT_DIR_ENV

# Trial exits wake the runners at once (a waiter thread per trial sets an event); this period
# only bounds how late cancel requests, timeouts and median stopping are noticed.
POLL_SECONDS = 0.1
DEFAULT_METRIC_TAG = "training/hptuning/metric"
MEDIAN_MIN_COMPLETED = 2  # completed trials needed before the median rule stops anything
TERMINAL_JOB_STATES = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def failure_limit(max_failed: int, max_trials: int) -> int:
    return max_failed if max_failed > 0 else max_trials


def parse_duration(text: str | None) -> float | None:
    if not text:
        return None
    return float(str(text).rstrip("s")) or None


# -- metrics ------------------------------------------------------------------------------------
def read_metric_file(path: Path, tag: str) -> tuple[list[tuple[int, float]], set[str]]:
    """(step, value) entries for ``tag`` in a cloudml-hypertune file, and every tag seen.

    hypertune rewrites the file non-atomically; a torn last line is skipped.
    """
    entries: list[tuple[int, float]] = []
    seen: set[str] = set()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return entries, seen
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        seen.update(
            k for k in obj if k not in ("timestamp", "trial", "global_step", "checkpoint_path")
        )
        if tag in obj:
            try:
                value = float(obj[tag])
                step = int(float(obj.get("global_step", 0) or 0))
            except (TypeError, ValueError):
                value, step = math.nan, 0
            entries.append((step, value))
    return entries, seen


def select_measurement(
    entries: list[tuple[int, float]], selection: int, maximize: bool
) -> tuple[int, float]:
    """LAST_MEASUREMENT (1, the API default, also for 0) or BEST_MEASUREMENT (2)."""
    if selection == 2:
        finite = [e for e in entries if math.isfinite(e[1])] or entries
        return (max if maximize else min)(finite, key=lambda e: e[1])
    return entries[-1]


# -- processes ----------------------------------------------------------------------------------
class Launcher:
    """Turns a CustomJobSpec (proto-JSON dict) into a TrialProcess."""

    def __init__(self, store: Store, resolve_image: Callable[[str], Path | None]) -> None:
        self.store = store
        self.resolve_image = resolve_image

    def workdir(self, job_spec: dict[str, Any]) -> Path | None:
        pools = job_spec.get("workerPoolSpecs") or []
        image = (pools[0].get("containerSpec") or {}).get("imageUri", "") if pools else ""
        return self.resolve_image(image)

    def start(
        self,
        job_spec: dict[str, Any],
        run_dir: Path,
        job_id: str,
        trial_id: str | None = None,
        trial_args: list[str] | None = None,
        notify: threading.Event | None = None,
    ) -> executor.TrialProcess:
        container = job_spec["workerPoolSpecs"][0]["containerSpec"]
        cwd = self.workdir(job_spec)
        if cwd is None:
            raise RuntimeError(f"image {container.get('imageUri')!r} is not runnable locally")
        argv = [*container.get("command", []), *container.get("args", []), *(trial_args or [])]
        if not argv:
            raise RuntimeError("worker pool 0 has neither command nor args")
        base_uri = (job_spec.get("baseOutputDirectory") or {}).get("outputUriPrefix", "")
        if base_uri.startswith("gs://"):
            base = self.store.local_path(base_uri)
        else:
            base = run_dir / "output"
        out = base / trial_id if trial_id else base
        (run_dir / "metrics").mkdir(parents=True, exist_ok=True)
        image = images.runtime(cwd)  # the image's interpreter first on PATH, its variables
        extra = {**image.env, **{e["name"]: e.get("value", "") for e in container.get("env", [])}}
        extra.update(
            {
                OUTPUT_DIR_ENV: str(run_dir / "outputs"),  # Hydra's output dir: not in the image
                "CLOUD_ML_JOB_ID": job_id,
                "CLOUD_ML_HP_METRIC_FILE": str(run_dir / "metrics" / "output.metrics"),
                "AIP_MODEL_DIR": str(out / "model") + "/",
                "AIP_CHECKPOINT_DIR": str(out / "checkpoints") + "/",
                "AIP_TENSORBOARD_LOG_DIR": str(out / "logs") + "/",
                "HYDRA_VERTEX_STORAGE_ROOT": str(self.store.storage_root),
            }
        )
        if trial_id:
            extra["CLOUD_ML_TRIAL_ID"] = trial_id
        env = executor.trial_env(dict(os.environ), extra, image.path)
        timeout = parse_duration((job_spec.get("scheduling") or {}).get("timeout"))
        return executor.TrialProcess(argv, cwd, env, run_dir, timeout=timeout, notify=notify)


def describe_exit(outcome: executor.Outcome, run_dir: Path) -> str | None:
    """None for a clean exit, else the deciding line (:mod:`hydra_vertex.reasons`) with the exit
    code or signal, then the log's tail."""
    if not (outcome.timed_out or outcome.signal is not None or outcome.exit_code):
        return None
    return reasons.trial_reason(
        run_dir, exit_code=outcome.exit_code, signal=outcome.signal, timed_out=outcome.timed_out
    )


# -- runners ------------------------------------------------------------------------------------
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


class JobRunner(StoredJobRunner):
    """A custom or tuning job: its processes start through the Launcher."""

    def __init__(self, store: Store, launcher: Launcher, job_id: str) -> None:
        super().__init__(store, job_id)
        self.launcher = launcher

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
        if rec["internal"].get("pid"):
            _kill_leftover(rec["internal"])
            self.finish(
                "JOB_STATE_FAILED",
                {
                    "code": 10,
                    "message": "interrupted: the emulator "
                    "stopped while the job ran (jobs are not resumed)",
                },
            )
            return
        if self.cancel_requested():
            self.finish("JOB_STATE_CANCELLED", {"code": 1, "message": "CANCELED"})
            return
        try:
            proc = self.launcher.start(rec["resource"]["jobSpec"], run_dir, self.job_id)
        except Exception as e:
            self.finish("JOB_STATE_FAILED", {"code": 9, "message": str(e)})
            return
        self.update(lambda r: r["internal"].update(pid=proc.pid, start=_proc_start(proc.pid)))
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
                    self.finish("JOB_STATE_CANCELLED", {"code": 1, "message": "CANCELED"})
                    return
                proc.wait(POLL_SECONDS)
            reason = describe_exit(outcome, run_dir)  # finish() forgets the pid
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


class TuningJobRunner(JobRunner):
    collection = "hyperparameterTuningJobs"

    def __init__(self, store: Store, launcher: Launcher, job_id: str) -> None:
        super().__init__(store, launcher, job_id)
        self.wake = threading.Event()  # set by every trial process of this job when it exits

    def run(self) -> None:
        from google.cloud.aiplatform_v1.types import StudySpec

        from hydra_vertex.emulator import suggester

        rec = self.store.get(self.collection, self.job_id)
        if rec is None or rec["resource"].get("state") in TERMINAL_JOB_STATES:
            return
        res = rec["resource"]
        spec = StudySpec.from_json(json.dumps(res["studySpec"]), ignore_unknown_fields=True)
        kinds = suggester.parameter_kinds(spec)
        threading.Thread(target=suggester.warm_up, args=(spec,), daemon=True).start()
        metric = spec.metrics[0].metric_id if spec.metrics else DEFAULT_METRIC_TAG
        maximize = bool(spec.metrics) and int(spec.metrics[0].goal) == 1
        selection = int(spec.measurement_selection_type)
        max_trials = int(res.get("maxTrialCount") or 1)
        parallel = max(1, int(res.get("parallelTrialCount") or 1))
        limit = failure_limit(int(res.get("maxFailedTrialCount") or 0), max_trials)
        seed = int(rec["internal"].get("seed", 0))
        self._reconcile_after_restart()
        self.set_running()
        running: dict[str, executor.TrialProcess] = {}
        exhausted = False
        median_stopping = "medianAutomatedStoppingSpec" in res["studySpec"]
        checked: dict[str, int] = {}  # trial id -> last step judged by the median rule
        try:
            while not self.stop_event.is_set():
                self.wake.clear()  # a trial ending from here on makes the wait below return
                # 1. reap finished trials
                for tid, proc in list(running.items()):
                    outcome = proc.poll()
                    if outcome is not None:
                        del running[tid]
                        self._end_trial(tid, outcome, metric, maximize, selection)
                trials = self.store.get(self.collection, self.job_id)["resource"].get("trials", [])
                if median_stopping:
                    self._median_stop(running, trials, checked, metric, maximize, selection)
                failed = sum(
                    1 for t in trials if t.get("state") == "INFEASIBLE" and not t.get("_uncounted")
                )
                # 2. cancel / failure limit
                if self.cancel_requested():
                    self._stop_all(running, "cancelled with the job")
                    self.finish("JOB_STATE_CANCELLED", {"code": 1, "message": "CANCELED"})
                    return
                if failed >= limit:
                    self._stop_all(running, "stopped: the job failed")
                    self.finish(
                        "JOB_STATE_FAILED",
                        {
                            "code": 9,
                            "message": (
                                f"{failed} trials failed, reaching max_failed_trial_count={limit} "
                                f"(0 means all max_trial_count trials). Last reason: "
                                f"{_last_reason(trials)}"
                            ),
                        },
                    )
                    return
                # 3. refill free slots
                while len(running) < parallel and len(trials) < max_trials and not exhausted:
                    past = [
                        suggester.PastTrial(
                            {p["parameterId"]: p["value"] for p in t.get("parameters", [])},
                            _final_value(t, metric),
                            pending=t.get("state") == "ACTIVE",
                        )
                        for t in trials
                    ]
                    params = suggester.suggest(spec, past, seed=seed)
                    if params is None:
                        exhausted = True
                        break
                    tid = str(len(trials) + 1)
                    trials = self._start_trial(tid, params, kinds, running)
                # 4. done?
                if not running and (len(trials) >= max_trials or exhausted):
                    ok = sum(1 for t in trials if t.get("state") == "SUCCEEDED")
                    if ok:
                        self.finish("JOB_STATE_SUCCEEDED")
                    else:
                        self.finish(
                            "JOB_STATE_FAILED",
                            {
                                "code": 9,
                                "message": (
                                    f"no trial succeeded. Last reason: {_last_reason(trials)}"
                                ),
                            },
                        )
                    return
                self.wake.wait(POLL_SECONDS)
        finally:
            for proc in running.values():
                proc.kill()

    # -- trial steps -----------------------------------------------------------------------------
    def _start_trial(
        self,
        tid: str,
        params: dict[str, Any],
        kinds: dict[str, str],
        running: dict[str, executor.TrialProcess],
    ) -> list[dict[str, Any]]:
        trial = {
            "id": tid,
            "state": "ACTIVE",
            "startTime": now(),
            "parameters": [{"parameterId": k, "value": v} for k, v in params.items()],
        }
        self.update(lambda r: r["resource"].setdefault("trials", []).append(trial))
        rec = self.store.get(self.collection, self.job_id)
        args = [f"--{k}={_format_value(v, kinds.get(k, 'DOUBLE'))}" for k, v in params.items()]
        try:
            proc = self.launcher.start(
                rec["resource"]["trialJobSpec"],
                self.store.run_dir(self.job_id, tid),
                self.job_id,
                tid,
                args,
                notify=self.wake,
            )
        except Exception as e:
            self._set_trial(
                tid, state="INFEASIBLE", endTime=now(), infeasibleReason=f"could not start: {e}"
            )
        else:
            running[tid] = proc
            self.update(
                lambda r: (
                    r["internal"]
                    .setdefault("pids", {})
                    .update({tid: {"pid": proc.pid, "start": _proc_start(proc.pid)}})
                )
            )
        return self.store.get(self.collection, self.job_id)["resource"]["trials"]

    def _set_trial(self, tid: str, **fields: Any) -> None:
        def fn(rec: Record) -> None:
            for t in rec["resource"]["trials"]:
                if t["id"] == tid:
                    t.update(fields)
            rec["internal"].get("pids", {}).pop(tid, None)
            rec["resource"]["updateTime"] = now()

        self.update(fn)

    def _end_trial(
        self, tid: str, outcome: executor.Outcome, metric: str, maximize: bool, selection: int
    ) -> None:
        run_dir = self.store.run_dir(self.job_id, tid)
        reason = describe_exit(outcome, run_dir)
        entries, seen = read_metric_file(run_dir / "metrics" / "output.metrics", metric)
        measurements = _measurements(entries, metric)
        if reason is None and not entries:
            reason = (
                f"reported no metric {metric!r}; tags seen: {sorted(seen)}"
                if seen
                else f"reported no metric (expected tag {metric!r}, the metric file is empty)"
            )
        if reason is None:
            step, value = select_measurement(entries, selection, maximize)
            if not math.isfinite(value):
                reason = f"reported a non-finite value ({value}) for metric {metric!r}"
            else:
                self._succeed(tid, entries, metric, step, value)
                return
        self._set_trial(
            tid,
            state="INFEASIBLE",
            endTime=now(),
            measurements=measurements,
            infeasibleReason=reason,
        )

    def _median_stop(
        self,
        running: dict[str, executor.TrialProcess],
        trials: list[dict[str, Any]],
        checked: dict[str, int],
        metric: str,
        maximize: bool,
        selection: int,
    ) -> None:
        """Median automated stopping (StudySpec.MedianAutomatedStoppingSpec, step-based).

        A running trial whose best value so far is strictly worse than the median, over completed
        trials, of their running average up to the same step is stopped: its group is killed and
        it ends SUCCEEDED with the measurements it reported (Vertex has no "stopped" state).
        """
        completed = [t for t in trials if t.get("state") == "SUCCEEDED" and t.get("measurements")]
        if len(completed) < MEDIAN_MIN_COMPLETED:
            return
        for tid, proc in list(running.items()):
            path = self.store.run_dir(self.job_id, tid) / "metrics" / "output.metrics"
            entries = [e for e in read_metric_file(path, metric)[0] if math.isfinite(e[1])]
            if not entries:
                continue
            step = max(s for s, _ in entries)
            if checked.get(tid) == step:
                continue
            checked[tid] = step
            best = (max if maximize else min)(v for _, v in entries)
            perfs = []
            for t in completed:
                vals = [
                    float(m["metrics"][0]["value"])
                    for m in t["measurements"]
                    if int(m.get("stepCount", 0)) <= step and m.get("metrics")
                ]
                if vals:
                    perfs.append(sum(vals) / len(vals))
            if len(perfs) < MEDIAN_MIN_COMPLETED:
                continue
            median = statistics.median(perfs)
            if (best < median) if maximize else (best > median):
                proc.kill()
                del running[tid]
                fstep, fvalue = select_measurement(entries, selection, maximize)
                self._succeed(
                    tid, entries, metric, fstep, fvalue,
                    _early_stopped=f"best {best} at step {step} worse than median {median}",
                )

    def _succeed(
        self,
        tid: str,
        entries: list[tuple[int, float]],
        metric: str,
        step: int,
        value: float,
        **extra: Any,
    ) -> None:
        """End a trial SUCCEEDED with its measurements and the selected final measurement."""
        self._set_trial(
            tid,
            state="SUCCEEDED",
            endTime=now(),
            measurements=_measurements(entries, metric),
            finalMeasurement={
                "stepCount": str(step),
                "metrics": [{"metricId": metric, "value": value}],
            },
            **extra,
        )

    def _stop_all(self, running: dict[str, executor.TrialProcess], why: str) -> None:
        for tid, proc in list(running.items()):
            proc.kill()
            self._set_trial(
                tid, state="INFEASIBLE", endTime=now(), infeasibleReason=why, _uncounted=True
            )
            del running[tid]

    def _reconcile_after_restart(self) -> None:
        rec = self.store.get(self.collection, self.job_id)
        for t in rec["resource"].get("trials", []):
            if t.get("state") in ("ACTIVE", "REQUESTED", "STOPPING"):
                info = rec["internal"].get("pids", {}).get(t["id"])
                if info:
                    _kill_leftover(info)
                self._set_trial(
                    t["id"],
                    state="INFEASIBLE",
                    endTime=now(),
                    _uncounted=True,
                    infeasibleReason="interrupted: the emulator stopped while the "
                    "trial ran (trials are not resumed after a restart)",
                )


def _final_value(trial: dict[str, Any], metric: str) -> float | None:
    for m in (trial.get("finalMeasurement") or {}).get("metrics", []):
        if m.get("metricId") == metric:
            return float(m.get("value", math.nan))
    return None


def _last_reason(trials: list[dict[str, Any]]) -> str:
    found = [t.get("infeasibleReason", "") for t in trials if t.get("state") == "INFEASIBLE"]
    return reasons.first_line(found[-1]) if found else "none"


def _format_value(value: Any, kind: str) -> str:
    if kind == "INTEGER":
        return str(int(float(value)))
    if kind == "CATEGORICAL":
        return str(value)
    return repr(float(value))


def _proc_start(pid: int) -> str | None:
    """The process start time from /proc (guards against pid reuse after a restart)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _kill_leftover(info: dict[str, Any]) -> None:
    pid = int(info.get("pid", 0))
    current = _proc_start(pid)
    # a vanished leader cannot have had its pid (= the group id) reused while the group lives
    if pid > 0 and (current is None or info.get("start") is None or current == info.get("start")):
        executor.kill_group(pid, None)


def _measurements(entries: list[tuple[int, float]], metric: str) -> list[dict[str, Any]]:
    """Proto-JSON measurements for the finite (step, value) entries of a metric file."""
    return [
        {"stepCount": str(s), "metrics": [{"metricId": metric, "value": v}]}
        for s, v in entries
        if math.isfinite(v)
    ]
