"""Progress of a local run: what the pipeline is doing, trials running/done/failed, best so far.

On a terminal it is a live ``rich`` panel; elsewhere one plain line per finished trial (a CI log
stays readable); ``quiet`` shows nothing. The state comes from the emulator through the same
client the components use (``TuningWatch``), not from the pipeline's log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from hydra_vertex.trials import TrialResult, short_reason


@dataclass
class Snapshot:
    stage: str = "starting"
    trials: list[TrialResult] = field(default_factory=list)
    max_trials: int = 0
    best: TrialResult | None = None
    started: float = field(default_factory=time.monotonic)

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
        for t in snap.trials:
            if t.state in ("SUCCEEDED", "INFEASIBLE") and t.id not in self._printed:
                self._printed.add(t.id)
                value = f"{self.metric}={t.value:.6g}" if t.value is not None else ""
                reason = short_reason(t.infeasible_reason)
                best = f" (best {snap.best.value:.6g}, trial {snap.best.id})" if snap.best else ""
                done = snap.count("SUCCEEDED", "INFEASIBLE")
                self._line(
                    f"trial {t.id:>3} {t.state:<10} {value or reason}{best} "
                    f"[{done}/{snap.max_trials}]"
                )
        if snap.stage != self._stage:
            self._stage = snap.stage
            self._line(f"[{snap.stage}]")

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

_TRIAL_STATES = {
    "1": "REQUESTED", "2": "ACTIVE", "3": "STOPPING", "4": "SUCCEEDED", "5": "INFEASIBLE",
}
_JOB_RUNNING = (
    "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING",
)


def _seconds_since(stamp: str) -> float | None:
    from datetime import UTC, datetime

    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


def _record_trials(resource: dict[str, Any], metric: str) -> list[TrialResult]:
    out = []
    for t in resource.get("trials") or []:
        state = str(t.get("state", ""))
        state = _TRIAL_STATES.get(state, state)
        value = None
        for m in (t.get("finalMeasurement") or {}).get("metrics") or []:
            if m.get("metricId") == metric and isinstance(m.get("value"), int | float):
                value = float(m["value"])
        params = {str(p.get("parameterId")): p.get("value") for p in t.get("parameters") or []}
        out.append(TrialResult(str(t.get("id", "")), state, params, value,
                               str(t.get("infeasibleReason", ""))))
    return out


def store_snapshot(store: Any, prefer: str | None = None) -> tuple[str, str, Snapshot] | None:
    """``(job name, metric, snapshot)`` of the tuning job to show from an emulator's store: the
    newest running one, else ``prefer`` (the job shown so far, to show how it ended), else the
    newest; None when there is none. Read straight from the store (the emulator's own process),
    not through the API."""
    jobs = [rec.get("resource", {}) for _, rec in store.items("hyperparameterTuningJobs")]
    if not jobs:
        return None
    jobs.sort(
        key=lambda r: (
            r.get("state") in _JOB_RUNNING,
            r.get("name") == prefer,
            str(r.get("createTime", "")),
        )
    )
    res = jobs[-1]
    spec_metric = ((res.get("studySpec") or {}).get("metrics") or [{}])[0]
    metric = str(spec_metric.get("metricId", "objective"))
    minimize = str(spec_metric.get("goal", "")) in ("MINIMIZE", "2")
    state = str(res.get("state", ""))
    name = str(res.get("displayName") or res.get("name", ""))
    ago = _seconds_since(str(res.get("startTime") or res.get("createTime") or ""))
    snap = Snapshot(
        stage=f"{name}: " + ("tuning" if state in _JOB_RUNNING else
                             state.removeprefix("JOB_STATE_").lower()),
        trials=_record_trials(res, metric),
        max_trials=int(res.get("maxTrialCount") or 0),
        started=time.monotonic() - (ago or 0.0),
    )
    snap.best = best_of(snap.trials, minimize)
    return str(res.get("name", name)), metric, snap


class StoreWatch:
    """The fetch of a :class:`Watcher` over an emulator's store: follows the newest tuning job and
    sets the display's metric to that job's (a new job starts its trial lines afresh)."""

    def __init__(self, store: Any, display: Display) -> None:
        self.store = store
        self.display = display
        self.job = ""

    def __call__(self) -> Snapshot | None:
        found = store_snapshot(self.store, prefer=self.job or None)
        if found is None:
            return None
        job, metric, snap = found
        if job != self.job:
            self.job = job
            self.display.metric = metric
            self.display._printed.clear()
        return snap


class emulator_progress:
    """Progress of the tuning jobs an emulator runs, for ``hydra-vertex emulator``::

        with emulator_progress(handle.emulator.store, sys.stdout, mode="auto"):
            done.wait()

    ``mode``: ``auto`` (a live panel on a terminal, lines otherwise), ``live``, ``lines``,
    ``quiet``."""

    def __init__(self, store: Any, stream: TextIO, mode: str = "auto", interval: float = 0.5):
        if mode == "auto":
            mode = "live" if stream.isatty() else "lines"
        self.display = Display(mode, "objective", stream)
        self.watcher = Watcher(StoreWatch(store, self.display), self.display, interval)

    def __enter__(self) -> emulator_progress:
        self.display.__enter__()
        if self.display.mode != "quiet":
            self.watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.watcher.is_alive():
            self.watcher.stop()
        self.display.__exit__(*exc)
