"""Progress of a local run: what the pipeline is doing, trials running/done/failed, best so far.

On a terminal it is a live ``rich`` panel; elsewhere one plain line per finished trial (a CI log
stays readable); ``quiet`` shows nothing. The state comes from the emulator through the same
client the components use (``TuningWatch``), not from the pipeline's log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from hydra_vertex.trials import TrialResult, short_reason

if TYPE_CHECKING:  # pragma: no cover
    from hydra_vertex.local_details import JobDetails


@dataclass
class Snapshot:
    stage: str = "starting"
    trials: list[TrialResult] = field(default_factory=list)
    max_trials: int = 0
    best: TrialResult | None = None
    started: float = field(default_factory=time.monotonic)
    warnings: list[str] = field(default_factory=list)  # the emulator's, about the jobs shown

    def count(self, *states: str) -> int:
        return sum(1 for t in self.trials if t.state in states)


def best_of(trials: list[TrialResult], minimize: bool) -> TrialResult | None:
    """The best trial so far by the best-trial rules (:func:`trials.select_best`), or None."""
    from hydra_vertex.errors import TuningError
    from hydra_vertex.trials import select_best

    try:
        return select_best(trials, minimize=minimize)
    except TuningError:
        return None


def _on(trial: TrialResult) -> str:
    """`` on GPU 0,1`` for a trial that was lent GPUs (the emulator's details), else ``""``."""
    return f" on GPU {','.join(trial.devices)}" if trial.devices else ""


def _fmt_params(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _eta(
    snap: Snapshot, elapsed: float, since: tuple[float, int] | None = None
) -> str:
    """What remains of the tuning, at the pace trials have finished. ``since``: (time, trials
    done) when the tuning was first seen: the pace since then leaves out the image build."""
    done = snap.count("SUCCEEDED", "INFEASIBLE")
    if not done or not snap.max_trials or not snap.stage.endswith("tuning"):
        return ""
    per_trial = elapsed / done
    if since is not None and done > since[1]:
        per_trial = (time.monotonic() - since[0]) / (done - since[1])
    left = max(0, snap.max_trials - done) * per_trial
    return f" · ~{left:.0f}s left"


def _bar(done: int, total: int, width: int = 40) -> Any:
    """A plain text progress bar. (rich's ProgressBar swallows the line after it on a terminal
    in rich 15, so the counts under it vanished.)"""
    from rich.text import Text

    filled = round(width * done / total) if total else 0
    return Text.assemble(("━" * filled, "green"), ("━" * (width - filled), "grey30"))


class Display:
    """Renders snapshots. ``mode``: ``live`` (terminal), ``lines`` (logs) or ``quiet``."""

    def __init__(self, mode: str, metric: str, stream: TextIO) -> None:
        self.mode = mode
        self.metric = metric
        self.stream = stream
        self._printed: set[str] = set()
        self._started: set[str] = set()
        self._warned: set[str] = set()
        self._live: Any = None
        self._stage = ""
        self._tuning_since: tuple[float, int] | None = None

    def __enter__(self) -> Display:
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                console=Console(file=self.stream),
                refresh_per_second=4,
                transient=True,
                redirect_stdout=False,  # the pipeline's output is going to its log file
                redirect_stderr=False,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, snap: Snapshot) -> None:
        if self.mode == "quiet":
            return
        if self.mode == "live":
            self._live.update(self._panel(snap))
            return
        for warning in snap.warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                self._line(f"hydra-vertex emulator: {warning}")
        for t in snap.trials:
            if t.state in ("SUCCEEDED", "INFEASIBLE") and t.id not in self._printed:
                self._printed.add(t.id)
                value = f"{self.metric}={t.value:.6g}" if t.value is not None else ""
                reason = short_reason(t.infeasible_reason)
                stopped = " (stopped early)" if t.stopped_early else ""
                best = f" (best {snap.best.value:.6g}, trial {snap.best.id})" if snap.best else ""
                done = snap.count("SUCCEEDED", "INFEASIBLE")
                self._line(
                    f"trial {t.id:>3} {t.state:<10} {value or reason}{stopped}{best} "
                    f"[{done}/{snap.max_trials}]{_on(t)}"
                )
        if snap.stage != self._stage:
            self._stage = snap.stage
            self._line(f"[{snap.stage}]")
        for t in snap.trials:  # where each trial runs, when it was lent GPUs
            if t.state == "ACTIVE" and t.devices and t.id not in self._started:
                self._started.add(t.id)
                self._line(f"trial {t.id:>3} {t.state:<10}{_on(t)}")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _panel(self, snap: Snapshot) -> Any:
        from rich.console import Group
        from rich.text import Text

        elapsed = time.monotonic() - snap.started
        done = snap.count("SUCCEEDED", "INFEASIBLE")
        if self._tuning_since is None and snap.stage.endswith("tuning"):
            self._tuning_since = (time.monotonic(), done)
        head = Text.assemble(
            ("hydra-vertex ", "bold"),
            (snap.stage, "cyan"),
            f" · {elapsed:.0f}s{_eta(snap, elapsed, self._tuning_since)}",
        )
        counts = Text.assemble(
            f"trials {done}/{snap.max_trials} · ",
            (f"{snap.count('ACTIVE', 'REQUESTED', 'STOPPING')} running", "yellow"),
            " · ",
            (f"{snap.count('SUCCEEDED')} done", "green"),
            " · ",
            (f"{snap.count('INFEASIBLE')} failed", "red"),
        )
        parts: list[Any] = [
            head,
            _bar(done, snap.max_trials),
            counts,
        ]
        on_gpus = [f"{t.id}{_on(t)}" for t in snap.trials if t.state == "ACTIVE" and t.devices]
        if on_gpus:
            parts.append(Text("running: trial " + " · trial ".join(on_gpus)))
        parts.extend(Text(w, "yellow") for w in snap.warnings)
        if snap.best is not None and snap.best.value is not None:
            parts.append(
                Text(
                    f"best {self.metric}={snap.best.value:.6g} (trial {snap.best.id}): "
                    f"{_fmt_params(snap.best.parameters)}"
                )
            )
        return Group(*parts)


class Watcher(threading.Thread):
    """Polls ``fetch()`` (which returns a Snapshot) and hands it to ``display`` until stopped."""

    def __init__(
        self, fetch: Callable[[], Snapshot | None], display: Display, interval: float = 0.5
    ) -> None:
        super().__init__(name="hydra-vertex-progress", daemon=True)
        self.fetch = fetch
        self.display = display
        self.interval = interval
        self._stop_event = threading.Event()
        self.last: Snapshot | None = None

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.poll()
            self._stop_event.wait(self.interval)

    def poll(self) -> None:
        try:
            snap = self.fetch()
        except Exception:  # progress must never break the run; the next poll tries again
            return
        if snap is not None:
            self.last = snap
            self.display.update(snap)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.poll()  # the final state


# -- the emulator's own progress (``hydra-vertex emulator`` in the foreground) -------------------

_JOB_RUNNING = (
    "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING",
)


def _seconds_since(stamp: Any) -> float | None:
    from datetime import UTC, datetime

    if not isinstance(stamp, datetime):
        return None
    return max(0.0, (datetime.now(UTC) - stamp).total_seconds())


def tuning_snapshot(
    jobs: Sequence[Any],
    prefer: str | None = None,
    details: Callable[[str], JobDetails] | None = None,
) -> tuple[str, str, Snapshot] | None:
    """``(job name, metric, snapshot)`` of the tuning job to show among ``jobs``
    (``aiplatform_v1`` ``HyperparameterTuningJob``s, as the API lists them): the newest running
    one, else ``prefer`` (the job shown so far, to show how it ended), else the newest; None when
    there is none. ``details(job name)``: the emulator's details of the job (GPUs, stopped
    trials, warnings)."""
    from hydra_vertex._study_spec import goal_direction
    from hydra_vertex.jobs import state_name
    from hydra_vertex.trials import trial_results

    if not jobs:
        return None
    job = max(
        jobs,
        key=lambda j: (state_name(j) in _JOB_RUNNING, j.name == prefer, j.create_time),
    )
    metric = job.study_spec.metrics[0]
    state = state_name(job)
    name = job.display_name or job.name
    ago = _seconds_since(job.start_time or job.create_time)
    local = details(job.name) if details is not None else None
    snap = Snapshot(
        stage=f"{name}: " + ("tuning" if state in _JOB_RUNNING else
                             state.removeprefix("JOB_STATE_").lower()),
        trials=trial_results(job, local),
        max_trials=job.max_trial_count,
        started=time.monotonic() - (ago or 0.0),
        warnings=list(local.warnings) if local is not None else [],
    )
    snap.best = best_of(snap.trials, goal_direction(metric) == "minimize")
    return job.name, metric.metric_id, snap


class JobsWatch:
    """The fetch of a :class:`Watcher` over the tuning jobs an emulator serves (``list_jobs()``
    lists them through the API): follows the newest tuning job and sets the display's metric to
    that job's (a new job starts its trial lines afresh)."""

    def __init__(
        self,
        list_jobs: Callable[[], Sequence[Any]],
        display: Display,
        details: Callable[[str], JobDetails] | None = None,
    ) -> None:
        self.list_jobs = list_jobs
        self.display = display
        self.details = details
        self.job = ""

    def __call__(self) -> Snapshot | None:
        found = tuning_snapshot(self.list_jobs(), prefer=self.job or None, details=self.details)
        if found is None:
            return None
        job, metric, snap = found
        if job != self.job:
            self.job = job
            self.display.metric = metric
            self.display._printed.clear()
            self.display._started.clear()
        return snap


def emulator_details(endpoint: str, token: str) -> Callable[[str], JobDetails]:
    """The emulator's details of a job by name (:func:`local_details.job_details`)."""
    from hydra_vertex.local_details import job_details

    return lambda name: job_details(endpoint, token, name)


def emulator_jobs(endpoint: str, token: str) -> Callable[[], list[Any]]:
    """Lists every tuning job of the emulator at ``endpoint`` (all projects and locations), over
    its REST API."""
    from hydra_vertex.vertex import emulator_job_client

    client = emulator_job_client(endpoint, token)

    def list_jobs() -> list[Any]:
        return list(client.list_hyperparameter_tuning_jobs(parent="projects/-/locations/-"))

    return list_jobs


class emulator_progress:
    """Progress of the tuning jobs an emulator runs, for ``hydra-vertex emulator``::

        with emulator_progress(emulator_jobs(handle.endpoint, handle.token), sys.stdout):
            done.wait()

    ``mode``: ``auto`` (a live panel on a terminal, lines otherwise), ``live``, ``lines``,
    ``quiet``."""

    def __init__(
        self,
        list_jobs: Callable[[], Sequence[Any]],
        stream: TextIO,
        mode: str = "auto",
        interval: float = 0.5,
        details: Callable[[str], JobDetails] | None = None,
    ):
        if mode == "auto":
            mode = "live" if stream.isatty() else "lines"
        self.display = Display(mode, "objective", stream)
        watch = JobsWatch(list_jobs, self.display, details)
        self.watcher = Watcher(watch, self.display, interval)

    def __enter__(self) -> emulator_progress:
        self.display.__enter__()
        if self.display.mode != "quiet":
            self.watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.watcher.is_alive():
            self.watcher.stop()
        self.display.__exit__(*exc)
