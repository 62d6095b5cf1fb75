"""Best-trial selection from a finished ``HyperparameterTuningJob``.

Rules (the same on Vertex and on the emulator):

- Only SUCCEEDED trials compete; INFEASIBLE ones (crashes, missing or NaN metrics) are skipped.
- A trial's value follows the study's measurement selection: LAST_MEASUREMENT (the API default)
  takes the final measurement; BEST_MEASUREMENT takes the best of the final and intermediate
  measurements by the metric's goal.
- Ties are broken deterministically: the trial with the smaller numeric id (the one that started
  first) wins, so re-reading a job always picks the same winner.
- No successful trial is a :class:`~hydra_vertex.errors.TuningError` that says how many trials
  failed and why.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hydra_vertex.errors import TuningError
from hydra_vertex.reasons import strip_ansi

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud.aiplatform_v1.types import HyperparameterTuningJob, Measurement, Trial

    from hydra_vertex.local_details import JobDetails, TrialDetails
    from hydra_vertex.search_space import SearchSpace

@dataclass(frozen=True)
class TrialResult:
    id: str
    state: str
    parameters: dict[str, Any]
    value: float | None
    infeasible_reason: str = ""
    reason: str = ""  # the deciding line of an infeasible trial (hydra_vertex.reasons)
    output_dir: str | None = None  # the trial's Hydra output directory, where known
    start_time: str | None = None  # RFC 3339, UTC
    end_time: str | None = None
    # the intermediate measurements of the study's metric: (step, value), in step order
    intermediate: tuple[tuple[int, float], ...] = ()
    # Known from the emulator only (hydra_vertex.local_details); Vertex's API does not say:
    stopped_early: bool = False  # stopped by the early-stopping rule (it ended SUCCEEDED)
    stop_reason: str = ""  # the rule's line
    saved_steps: int | None = None  # what stopping it saved (an estimate)
    saved_seconds: float | None = None
    devices: tuple[str, ...] | None = None  # the GPUs it ran on (None: the machine has none)

    def __post_init__(self) -> None:
        if self.infeasible_reason and not self.reason:
            object.__setattr__(self, "reason", short_reason(self.infeasible_reason))


@dataclass(frozen=True)
class BestTrial:
    trial_id: str
    value: float
    parameters: dict[str, Any]
    overrides: list[str]
    trials: list[TrialResult] = field(default_factory=list)


def _metric_value(measurement: Measurement, metric_id: str) -> float | None:
    for m in measurement.metrics:
        if m.metric_id == metric_id:
            v = float(m.value)
            return v if math.isfinite(v) else None
    return None


def trial_value(
    trial: Trial, metric_id: str, minimize: bool, best_measurement: bool
) -> float | None:
    """The trial's objective under the measurement selection, or None if it has none."""
    final = _metric_value(trial.final_measurement, metric_id) if trial.final_measurement else None
    if not best_measurement:
        return final
    values = [v for v in (_metric_value(m, metric_id) for m in trial.measurements) if v is not None]
    if final is not None:
        values.append(final)
    if not values:
        return None
    return min(values) if minimize else max(values)


def _id_key(trial_id: str) -> tuple[int, str]:
    return (int(trial_id), "") if trial_id.isdigit() else (2**63, trial_id)


def trial_results(
    job: HyperparameterTuningJob, details: JobDetails | None = None
) -> list[TrialResult]:
    """Every trial of the job as plain data (ids ascending), with the emulator's ``details`` of
    each (:mod:`hydra_vertex.local_details`) where given."""
    from google.cloud.aiplatform_v1.types import Trial

    from hydra_vertex._study_spec import goal_direction, measurement_selection

    spec = job.study_spec
    metric = spec.metrics[0]
    minimize = goal_direction(metric) == "minimize"
    best = measurement_selection(spec) == "best"
    out = []
    for t in job.trials:
        state = Trial.State(t.state).name
        value = trial_value(t, metric.metric_id, minimize, best) if state == "SUCCEEDED" else None
        reason = strip_ansi(t.infeasible_reason)
        local = details.trials.get(t.id) if details is not None else None
        out.append(
            TrialResult(
                id=t.id,
                state=state,
                parameters={p.parameter_id: p.value for p in t.parameters},
                value=value,
                infeasible_reason=reason,
                start_time=_rfc3339(t.start_time),
                end_time=_rfc3339(t.end_time),
                intermediate=intermediate_values(t, metric.metric_id),
                **(_local_fields(local) if local is not None else {}),
            )
        )
    return sorted(out, key=lambda r: _id_key(r.id))


def _rfc3339(stamp: Any) -> str | None:
    if not stamp:
        return None
    return str(stamp.isoformat().replace("+00:00", "Z"))


def intermediate_values(trial: Trial, metric_id: str) -> tuple[tuple[int, float], ...]:
    """The trial's intermediate measurements of ``metric_id``: ``(step, value)`` by step, finite
    values only."""
    points = {
        int(m.step_count): v
        for m in trial.measurements
        if (v := _metric_value(m, metric_id)) is not None
    }
    return tuple(sorted(points.items()))


def _local_fields(local: TrialDetails) -> dict[str, Any]:
    return {
        "stopped_early": local.stopped_early,
        "stop_reason": strip_ansi(local.stop_reason),
        "saved_steps": local.saved_steps,
        "saved_seconds": local.saved_seconds,
        "devices": local.devices,
    }


def early_stopping_totals(trials: Iterable[TrialResult]) -> dict[str, Any]:
    """How many trials were stopped early and what that saved in all (estimates: each stopped
    trial's steps and seconds left to the completed trials' median length)."""
    stopped = [t for t in trials if t.stopped_early]
    return {
        "stopped_trials": len(stopped),
        "saved_steps": sum(t.saved_steps or 0 for t in stopped),
        "saved_seconds": round(sum(t.saved_seconds or 0.0 for t in stopped), 3),
    }


def select_best(
    trials: Iterable[TrialResult], *, minimize: bool, job_name: str = "the tuning job"
) -> TrialResult:
    all_trials = list(trials)
    ranked = [t for t in all_trials if t.state == "SUCCEEDED" and t.value is not None]
    if not ranked:
        raise TuningError(no_success_message(all_trials, job_name))
    sign = 1.0 if minimize else -1.0
    return min(ranked, key=lambda t: (sign * float(t.value or 0.0), _id_key(t.id)))


_EXCEPTION_LINE = re.compile(r"^[\w.]*(?:Error|Exception|Interrupt)\b.*")


def _crash_line(reason: str) -> str:
    """The exception line of a log tail in an infeasible reason (``RuntimeError: ...``), or ''."""
    for line in reversed(reason.splitlines()[1:]):
        if _EXCEPTION_LINE.match(line.strip()):
            return line.strip()
    return ""


def short_reason(reason: str) -> str:
    """One line for an infeasible reason: its first line, the deciding line
    (:mod:`hydra_vertex.reasons`). A reason stored before that rule ("exited with code 1; last
    log lines: ...") gets its exception line after it."""
    reason = strip_ansi(reason or "")
    if not reason.strip():
        return ""
    first = reason.strip().splitlines()[0].strip()
    if not first.endswith("; last log lines:"):
        return first
    first = first.removesuffix("; last log lines:").rstrip(";:")
    crash = _crash_line(reason)
    return f"{first}: {crash}" if crash else first


def no_success_message(trials: list[TrialResult], job_name: str) -> str:
    """What to say when no trial succeeded: how many failed, in which states, and why."""
    if not trials:
        return f"{job_name} has no trials; nothing to retrain with"
    states = Counter(t.state for t in trials)
    reasons = Counter(short_reason(t.infeasible_reason) for t in trials if t.infeasible_reason)
    parts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    lines = [f"{job_name}: no trial succeeded ({len(trials)} trials: {parts})"]
    for reason, n in reasons.most_common(3):
        lines.append(f"  {n} x {reason}")
    lines.append("Look at a trial's log for the details (the emulator keeps them per trial).")
    return "\n".join(lines)


def best_trial(job: HyperparameterTuningJob, space: SearchSpace | None = None) -> BestTrial:
    """The winner of a finished job, with its Hydra overrides typed by the search space."""
    from hydra_vertex._study_spec import goal_direction
    from hydra_vertex.overrides import trial_overrides
    from hydra_vertex.search_space import SearchSpace

    if space is None:
        space = SearchSpace.from_study_spec(job.study_spec, source=f"{job.name} study_spec")
    minimize = goal_direction(job.study_spec.metrics[0]) == "minimize"
    results = trial_results(job)
    winner = select_best(results, minimize=minimize, job_name=job.display_name or job.name)
    assert winner.value is not None  # select_best only returns trials with a value
    return BestTrial(
        trial_id=winner.id,
        value=winner.value,
        parameters=dict(winner.parameters),
        overrides=trial_overrides(space, _as_trial_args(winner.parameters)),
        trials=results,
    )


def _as_trial_args(parameters: Mapping[str, Any]) -> dict[str, str | int | float]:
    return {k: (v if isinstance(v, int | float | str) else str(v)) for k, v in parameters.items()}


def typed_parameters(space: SearchSpace, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Vertex's parameter values with the search space's types (an int parameter is an int, a
    category its Hydra value); unknown ids are kept as they are."""
    declared = space.by_parameter_id()
    out: dict[str, Any] = {}
    for pid, value in parameters.items():
        param = declared.get(pid)
        if param is None:
            out[pid] = value
        elif param.kind == "CATEGORICAL":
            out[pid] = param.category_value(str(value))
        elif param.is_int and isinstance(value, int | float):
            out[pid] = round(float(value))
        else:
            out[pid] = value
    return out
