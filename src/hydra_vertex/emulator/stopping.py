"""Automated early stopping of running trials (``StudySpec.automated_stopping_spec``).

A policy sees curves, never processes: :meth:`StoppingPolicy.should_stop` gets one running
trial's curve and the curves of the completed trials and answers why to stop it (or None). It is
given the clock (``time.monotonic`` unless a test injects another), so a rule over elapsed time
reads ``clock() - trial.started``. The trial loop kills a trial a policy stops; the trial ends
SUCCEEDED with what it reported (Vertex has no "stopped" state).

To add a policy: a class with ``should_stop`` and an entry in :data:`POLICIES` under the name of
its ``automated_stopping_spec`` field. Specs without an entry (decay curve, convex) are accepted
and stop nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hydra_vertex.emulator.metrics import Point, finite

Clock = Callable[[], float]


@dataclass(frozen=True)
class Curve:
    """What a policy sees of a trial: its reports so far, and when it started (clock time)."""

    trial_id: str
    points: tuple[Point, ...]
    started: float = 0.0


class StoppingPolicy(Protocol):
    def should_stop(self, trial: Curve, completed: Sequence[Curve]) -> str | None:
        """Why to stop the running ``trial`` now, or None to let it run."""
        ...


class MedianStopping:
    """``MedianAutomatedStoppingSpec``, step-based: a running trial whose best value so far is
    strictly worse than the median, over the completed trials, of their running average up to
    the same step is stopped. It needs ``MIN_COMPLETED`` completed trials with reports at or
    before that step; each trial is judged once per new step it reports."""

    MIN_COMPLETED = 2

    def __init__(self, maximize: bool, clock: Clock = time.monotonic) -> None:
        self.maximize = maximize
        self.clock = clock
        self._judged: dict[str, int] = {}  # trial id -> the last step judged

    def should_stop(self, trial: Curve, completed: Sequence[Curve]) -> str | None:
        points = finite(trial.points)
        if len(completed) < self.MIN_COMPLETED or not points:
            return None
        step = max(p.step for p in points)
        if self._judged.get(trial.trial_id) == step:
            return None
        self._judged[trial.trial_id] = step
        averages = []
        for other in completed:
            values = [p.value for p in finite(other.points) if p.step <= step]
            if values:
                averages.append(sum(values) / len(values))
        if len(averages) < self.MIN_COMPLETED:
            return None
        median = statistics.median(averages)
        best = (max if self.maximize else min)(p.value for p in points)
        if (best < median) if self.maximize else (best > median):
            return f"best {best} at step {step} worse than median {median}"
        return None


#: ``automated_stopping_spec`` field -> policy(spec message, maximize, clock)
POLICIES: dict[str, Callable[[Any, bool, Clock], StoppingPolicy]] = {
    "median_automated_stopping_spec": lambda spec, maximize, clock: MedianStopping(
        maximize, clock
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
