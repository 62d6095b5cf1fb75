"""Automated early stopping of running trials (``StudySpec.automated_stopping_spec``).

A policy sees curves, never processes: :meth:`StoppingPolicy.should_stop` gets one running
trial's curve and the curves of the completed trials (those that ran their course: trials
stopped early are left out, their curves end where they were cut) and answers why to stop it (or
None). It is given the clock (``time.monotonic`` unless a test injects another), so a rule
over wall time reads ``clock() - trial.started``. The trial loop kills a trial a policy stops;
the trial ends SUCCEEDED with what it reported (Vertex has no "stopped" state), marked as stopped
early.

Both rules read a curve along one axis: the measurements' ``step_count``, or with
``use_elapsed_duration`` their ``elapsed_duration`` (seconds since the trial started; the loop
records it on every measurement from the report's timestamp). Measurements without the axis's
value are left out.

- :class:`MedianStopping` (``median_automated_stopping_spec``): Vertex's rule. A running trial
  whose best value so far is strictly worse than the median, over the completed trials, of their
  running average up to the trial's last measurement is stopped.
- :class:`DecayCurveStopping` (``decay_curve_stopping_spec``): the running trial's curve is
  extrapolated to the length of the completed trials and stopped when the extrapolation is worse
  than the best completed trial. Vertex fits a Gaussian process over all trials' curves; this
  emulator fits one decay model per trial, a power law with an asymptote,
  ``y = a + b * u**-c`` (``b >= 0``, ``0 <= c <= 10``, for a curve going towards its goal;
  maximised metrics are negated first), where ``u`` is the amount of training in units of the
  gap between the first two measurements, the first one counting as one unit (so a report at
  step 0, or the seconds a process takes to start, do not skew it), fitted by least squares
  (``scipy.optimize.curve_fit``; :func:`decay_fit`).
  It is a deliberately simple model: a curve that is not decaying (flat or getting worse) fits
  with its recent level, so it is stopped when that level is worse than the best.

To add a policy: a class with ``should_stop`` and an entry in :data:`POLICIES` under the name of
its ``automated_stopping_spec`` field. Specs without an entry (convex) are accepted and stop
nothing.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hydra_vertex.emulator.metrics import Point, finite

Clock = Callable[[], float]


@dataclass(frozen=True)
class Curve:
    """What a policy sees of a trial: its reports so far, when it started (clock time), and the
    value of its final measurement once it has one."""

    trial_id: str
    points: tuple[Point, ...]
    started: float = 0.0
    final: float | None = None


class StoppingPolicy(Protocol):
    def should_stop(self, trial: Curve, completed: Sequence[Curve]) -> str | None:
        """Why to stop the running ``trial`` now, or None to let it run."""
        ...


def axis(point: Point, elapsed: bool) -> float | None:
    """Where ``point`` lies on the curve: its step, or its elapsed seconds."""
    return point.elapsed if elapsed else float(point.step)


def _along(points: Sequence[Point], elapsed: bool) -> list[tuple[float, float]]:
    """``(x, value)`` of the finite points that have an x, in report order."""
    out = []
    for p in finite(points):
        x = axis(p, elapsed)
        if x is not None and math.isfinite(x):
            out.append((x, p.value))
    return out


def _at(x: float, elapsed: bool) -> str:
    return f"{x:.3g} s elapsed" if elapsed else f"step {x:g}"


class _JudgedOnce:
    """What both policies share: the goal, the clock, the x axis (step or elapsed time), and
    judging each trial once per new measurement."""

    def __init__(
        self, maximize: bool, clock: Clock = time.monotonic, use_elapsed: bool = False
    ) -> None:
        self.maximize = maximize
        self.clock = clock
        self.use_elapsed = use_elapsed
        self._judged: dict[str, float] = {}  # trial id -> the last x judged

    def _new_measurement(self, trial: Curve, x: float) -> bool:
        """Whether ``x`` is a measurement of ``trial`` not judged yet (and mark it judged)."""
        if self._judged.get(trial.trial_id) == x:
            return False
        self._judged[trial.trial_id] = x
        return True


class MedianStopping(_JudgedOnce):
    """``MedianAutomatedStoppingSpec``: a running trial whose best value so far is strictly worse
    than the median, over the completed trials, of their running average up to the trial's last
    measurement (by step, or by elapsed duration) is stopped. It needs ``MIN_COMPLETED``
    completed trials with reports up to there; each trial is judged once per new measurement."""

    MIN_COMPLETED = 2

    def should_stop(self, trial: Curve, completed: Sequence[Curve]) -> str | None:
        points = _along(trial.points, self.use_elapsed)
        if len(completed) < self.MIN_COMPLETED or not points:
            return None
        x = max(px for px, _ in points)
        if not self._new_measurement(trial, x):
            return None
        averages = []
        for other in completed:
            values = [v for ox, v in _along(other.points, self.use_elapsed) if ox <= x]
            if values:
                averages.append(sum(values) / len(values))
        if len(averages) < self.MIN_COMPLETED:
            return None
        median = statistics.median(averages)
        best = (max if self.maximize else min)(v for _, v in points)
        if (best < median) if self.maximize else (best > median):
            return f"best {best} at {_at(x, self.use_elapsed)} worse than median {median}"
        return None


class DecayCurveStopping(_JudgedOnce):
    """``DecayCurveAutomatedStoppingSpec``: extrapolate the running trial's curve (the decay model
    of the module docstring) to the longest completed trial's last measurement; stop the trial if
    the extrapolation is strictly worse than the best completed trial's final value. It needs
    ``MIN_COMPLETED`` completed trials and ``MIN_POINTS`` measurements of the trial; a trial
    already as long as the completed ones, or a fit that fails, is left to run."""

    MIN_COMPLETED = 2
    MIN_POINTS = 3

    def should_stop(self, trial: Curve, completed: Sequence[Curve]) -> str | None:
        points = _along(trial.points, self.use_elapsed)
        if len(completed) < self.MIN_COMPLETED or len(points) < self.MIN_POINTS:
            return None
        x = max(px for px, _ in points)
        if not self._new_measurement(trial, x):
            return None
        ends = [c[-1][0] for c in (_along(o.points, self.use_elapsed) for o in completed) if c]
        finals = [v for v in (_final(o) for o in completed) if v is not None]
        if not ends or not finals:
            return None
        horizon = max(ends)
        if horizon <= x:
            return None
        sign = -1.0 if self.maximize else 1.0  # fit a curve going down
        predicted = decay_fit([(px, sign * v) for px, v in points], horizon)
        if predicted is None:
            return None
        predicted *= sign
        best = (max if self.maximize else min)(finals)
        if (predicted < best) if self.maximize else (predicted > best):
            return (
                f"extrapolated to {_at(horizon, self.use_elapsed)}: {predicted:.6g}, worse than "
                f"the best so far {best:.6g} (decay curve fitted at {_at(x, self.use_elapsed)})"
            )
        return None


def _final(curve: Curve) -> float | None:
    """A completed trial's final value (its last report when the final is not known)."""
    if curve.final is not None and math.isfinite(curve.final):
        return curve.final
    values = [p.value for p in finite(curve.points)]
    return values[-1] if values else None


def decay_fit(points: Sequence[tuple[float, float]], horizon: float) -> float | None:
    """The value at ``horizon`` of ``y = a + b * u**-c`` fitted to ``points`` (``(x, y)``, a
    curve going down), where ``u`` counts training from before the first measurement: the first
    one is one interval (the gap to the second) in, ``u = x - x[0] + (x[1] - x[0])``. None when
    there are fewer than three distinct x or the fit fails."""
    import numpy as np

    xs = sorted({x for x, _ in points})
    if len(xs) < 3:
        return None
    first, gap = xs[0], xs[1] - xs[0]
    last = {x: y for x, y in points}  # the last report at each x
    u = np.array([(x - first + gap) / gap for x in xs], dtype=float)
    y = np.array([last[x] for x in xs], dtype=float)
    prediction = _power_law(u, y, (horizon - first + gap) / gap)
    return prediction if prediction is not None and math.isfinite(prediction) else None


def _power_law(s: Any, y: Any, target: float) -> float | None:
    import warnings

    import numpy as np
    from scipy.optimize import OptimizeWarning, curve_fit

    def model(x: Any, a: float, b: float, c: float) -> Any:
        return a + b * np.power(x, -c)

    spread = float(np.ptp(y)) or 1.0
    start = [float(y[-1]), max(float(y[0] - y[-1]), 1e-9 * spread), 1.0]
    try:
        with warnings.catch_warnings():  # no covariance with 3 points: the fit is still exact
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(
                model, s, y, p0=start, bounds=([-np.inf, 0.0, 0.0], [np.inf, np.inf, 10.0]),
                maxfev=5000,
            )
    except (RuntimeError, ValueError):
        return None
    return float(model(target, *params))


@dataclass(frozen=True)
class Savings:
    """What stopping a trial early saved: the steps and the seconds it would have run on, had it
    gone as far as the completed trials did (their median; an estimate). None: unknown."""

    steps: int | None
    seconds: float | None


def savings(trial: Curve, completed: Sequence[Curve]) -> Savings:
    """The estimate of :class:`Savings` for ``trial`` stopped now."""

    def left(elapsed: bool) -> float | None:
        mine = _along(trial.points, elapsed)
        ends = [c[-1][0] for c in (_along(o.points, elapsed) for o in completed) if c]
        if not mine or not ends:
            return None
        return max(0.0, statistics.median(ends) - max(x for x, _ in mine))

    steps = left(False)
    seconds = left(True)
    return Savings(
        None if steps is None else round(steps),
        None if seconds is None else round(seconds, 3),
    )


#: ``automated_stopping_spec`` field -> policy(spec message, maximize, clock)
POLICIES: dict[str, Callable[[Any, bool, Clock], StoppingPolicy]] = {
    "median_automated_stopping_spec": lambda spec, maximize, clock: MedianStopping(
        maximize, clock, bool(spec.use_elapsed_duration)
    ),
    "decay_curve_stopping_spec": lambda spec, maximize, clock: DecayCurveStopping(
        maximize, clock, bool(spec.use_elapsed_duration)
    ),
}


def policy_for(
    study_spec: Any, maximize: bool, clock: Clock = time.monotonic
) -> StoppingPolicy | None:
    """The policy of a ``StudySpec`` (the proto), or None when it asks for none we apply."""
    from google.cloud.aiplatform_v1.types import StudySpec

    which = StudySpec.pb(study_spec).WhichOneof("automated_stopping_spec")
    make = POLICIES.get(which or "")
    return make(getattr(study_spec, which), maximize, clock) if make and which else None
