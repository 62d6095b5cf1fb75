"""Several objectives: the Pareto front of a finished study and the trial to retrain.

A study with several metrics has no single best trial. Its result is the **Pareto front**: the
SUCCEEDED trials that no other SUCCEEDED trial dominates (as good in every objective, each in its
metric's goal, and strictly better in one). INFEASIBLE trials take no part. Trials with equal
values do not dominate each other, so both stay on the front.

The trial to retrain is one of the front, picked by the ``select`` rule (the job file's
``select``, the sweeper's ``hydra.sweeper.select``)::

    select: {metric: latency}                      # the front's best trial by that metric
    select: {weights: {loss: 1, accuracy: -0.2}}   # the front's smallest weighted sum

- ``metric``: the trial of the front best by that metric, in its goal. The default rule is the
  first metric.
- ``weights``: the trial of the front with the smallest ``sum(weight * value)`` over the named
  metrics (the raw values: a positive weight counts a metric against a trial, a negative one for
  it; a metric left out weighs 0).
- Ties go to the smaller trial id (the one that started first), as for one objective.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hydra_vertex.errors import SettingError

if TYPE_CHECKING:  # pragma: no cover
    from hydra_vertex.trials import TrialResult

#: The keys of ``select``.
SELECT_KEYS = ("metric", "weights")


def dominates(a: Sequence[float], b: Sequence[float], minimize: Sequence[bool]) -> bool:
    """Whether values ``a`` dominate ``b``: no worse in every objective, better in one."""
    better = False
    for x, y, low in zip(a, b, minimize, strict=True):
        if (x > y) if low else (x < y):
            return False
        if x != y:
            better = True
    return better


def pareto_front(trials: Iterable[TrialResult], minimize: Sequence[bool]) -> list[TrialResult]:
    """The SUCCEEDED trials (with a finite value per objective) that no other one dominates, in
    trial-id order."""
    from hydra_vertex.trials import id_order

    done = [
        t
        for t in trials
        if t.state == "SUCCEEDED"
        and t.values is not None
        and len(t.values) == len(minimize)
        and all(math.isfinite(v) for v in t.values)
    ]
    front = [
        t
        for t in done
        if not any(
            dominates(o.values or (), t.values or (), minimize) for o in done if o is not t
        )
    ]
    return sorted(front, key=lambda t: id_order(t.id))


@dataclass(frozen=True)
class Select:
    """The rule that picks the trial to retrain from the Pareto front (see the module)."""

    metric: str | None = None
    weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, metrics: Sequence[str] | None = None) -> Select:
        """A checked rule; ``metrics``: the study's, which the rule must name. Raises
        :class:`SettingError` naming the field (``metric``, ``weights.<name>``)."""
        if data is None or data == {}:
            return cls()
        if not isinstance(data, Mapping):
            raise SettingError(
                "", "must be a mapping: {metric: NAME} or {weights: {NAME: NUMBER, ...}}", data
            )
        unknown = sorted(set(data) - set(SELECT_KEYS))
        if unknown:
            raise SettingError(unknown[0], f"is not a select key (allowed: {list(SELECT_KEYS)})",
                               data[unknown[0]])
        given = [k for k in SELECT_KEYS if data.get(k) is not None]
        if len(given) != 1:
            raise SettingError(
                "", "sets exactly one of 'metric' (the front's best by it) or 'weights' (the "
                "front's smallest weighted sum)", dict(data)
            )
        known = list(metrics) if metrics is not None else None
        if "metric" in given:
            metric = data["metric"]
            if not isinstance(metric, str) or (known is not None and metric not in known):
                raise SettingError("metric", f"must be one of the study's metrics {known}", metric)
            return cls(metric=metric)
        weights = data["weights"]
        if not isinstance(weights, Mapping) or not weights:
            raise SettingError(
                "weights", "must be a non-empty mapping of metric -> number", weights
            )
        out: dict[str, float] = {}
        for name, w in weights.items():
            if known is not None and name not in known:
                raise SettingError(
                    f"weights.{name}", f"names no metric of the study (its metrics: {known})", w
                )
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
                raise SettingError(f"weights.{name}", "must be a finite number", w)
            out[str(name)] = float(w)
        return cls(weights=out)

    def to_dict(self) -> dict[str, Any]:
        if self.weights:
            return {"weights": dict(self.weights)}
        return {"metric": self.metric} if self.metric else {}

    def describe(self, metrics: Sequence[str]) -> str:
        """One line: how the trial to retrain was picked."""
        if self.weights:
            terms = " + ".join(f"{w:g}*{m}" for m, w in self.weights.items())
            return f"the Pareto front's smallest {terms}"
        return f"the Pareto front's best {self.metric or metrics[0]}"

    def choose(
        self, front: Sequence[TrialResult], objectives: Sequence[tuple[str, str]]
    ) -> TrialResult:
        """The trial of ``front`` (non-empty) that the rule picks; ties to the smaller id."""
        from hydra_vertex.trials import id_order

        names = [m for m, _ in objectives]
        if self.weights:
            index = {m: i for i, m in enumerate(names)}

            def score(t: TrialResult) -> float:
                values = t.values or ()
                return sum(w * values[index[m]] for m, w in self.weights.items())

            return min(front, key=lambda t: (score(t), id_order(t.id)))
        metric = self.metric or names[0]
        i = names.index(metric)
        sign = 1.0 if objectives[i][1] == "minimize" else -1.0
        return min(front, key=lambda t: (sign * (t.values or ())[i], id_order(t.id)))
