"""Trial metrics: the ``cloudml-hypertune`` file a trial writes, the measurement Vertex selects,
and how a trial ends from what it reported.

``cloudml-hypertune`` rewrites the whole file on each report (not atomically) as JSON lines
``{"<tag>": "<value>", "global_step": "<n>", "timestamp": ...}``; a torn last line is skipped.
Values arrive as strings (``"nan"`` is possible).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_vertex.search_space import MeasurementSelection

_NOT_METRICS = ("timestamp", "trial", "global_step", "checkpoint_path")


@dataclass(frozen=True)
class Point:
    """One report of the objective: its step (``global_step``), value, and seconds since the
    trial started (from the report's ``timestamp``; None when unknown)."""

    step: int
    value: float
    elapsed: float | None = None


def read_metric_file(
    path: Path, tag: str, started: float | None = None
) -> tuple[list[Point], set[str]]:
    """The reports of ``tag`` in a cloudml-hypertune file, in order, and every tag seen.
    ``started``: the trial's start (``time.time()``), for each report's elapsed seconds."""
    points: list[Point] = []
    seen: set[str] = set()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return points, seen
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        seen.update(k for k in obj if k not in _NOT_METRICS)
        if tag in obj:
            try:
                point = Point(int(float(obj.get("global_step", 0) or 0)), float(obj[tag]))
            except (TypeError, ValueError):
                point = Point(0, math.nan)
            points.append(_with_elapsed(point, obj.get("timestamp"), started))
    return points, seen


def _with_elapsed(point: Point, timestamp: Any, started: float | None) -> Point:
    if started is None:
        return point
    try:
        elapsed = float(timestamp) - started
    except (TypeError, ValueError):
        return point
    return Point(point.step, point.value, max(0.0, elapsed)) if math.isfinite(elapsed) else point


def finite(points: Sequence[Point]) -> list[Point]:
    return [p for p in points if math.isfinite(p.value)]


def select_measurement(
    points: Sequence[Point], selection: MeasurementSelection, maximize: bool
) -> Point:
    """LAST_MEASUREMENT (``last``, the API default) or BEST_MEASUREMENT (``best``)."""
    if selection == "best":
        candidates = finite(points) or list(points)
        return (max if maximize else min)(candidates, key=lambda p: p.value)
    return points[-1]


def measurement(point: Point, metric: str) -> dict[str, Any]:
    """The proto-JSON ``Measurement`` of a report: step, elapsed duration (when known), value."""
    out: dict[str, Any] = {"stepCount": str(point.step)}
    if point.elapsed is not None:
        out["elapsedDuration"] = f"{point.elapsed:.3f}s"
    out["metrics"] = [{"metricId": metric, "value": point.value}]
    return out


def measurements(points: Sequence[Point], metric: str) -> list[dict[str, Any]]:
    """Proto-JSON ``Measurement``s of the finite reports."""
    return [measurement(p, metric) for p in finite(points)]


def stored_points(trial: dict[str, Any]) -> list[Point]:
    """The reports kept on a stored (proto-JSON) trial, from its ``measurements``."""
    return [
        Point(
            int(m.get("stepCount", 0)),
            float(m["metrics"][0]["value"]),
            _seconds(m.get("elapsedDuration")),
        )
        for m in trial.get("measurements") or []
        if m.get("metrics")
    ]


def _seconds(duration: Any) -> float | None:
    """Seconds of a proto-JSON ``Duration`` (``"1.5s"``); None when absent or malformed."""
    try:
        return float(str(duration).removesuffix("s")) if duration is not None else None
    except ValueError:
        return None


def final_value(trial: dict[str, Any], metric: str) -> float | None:
    """The value of ``metric`` in a stored trial's final measurement (None: it has none)."""
    for m in (trial.get("finalMeasurement") or {}).get("metrics", []):
        if m.get("metricId") == metric:
            return float(m.get("value", math.nan))
    return None


@dataclass(frozen=True)
class TrialEnd:
    """How a trial ends: SUCCEEDED with its final point, or INFEASIBLE with a reason."""

    points: list[Point]
    final: Point | None = None
    reason: str = ""

    @property
    def succeeded(self) -> bool:
        return self.final is not None


def judge(
    exit_reason: str | None,
    points: list[Point],
    seen: set[str],
    metric: str,
    selection: MeasurementSelection,
    maximize: bool,
) -> TrialEnd:
    """A trial that exited (``exit_reason`` None: cleanly) after reporting ``points``."""
    if exit_reason is not None:
        return TrialEnd(points, reason=exit_reason)
    if not points:
        return TrialEnd(
            points,
            reason=(
                f"reported no metric {metric!r}; tags seen: {sorted(seen)}"
                if seen
                else f"reported no metric (expected tag {metric!r}, the metric file is empty)"
            ),
        )
    final = select_measurement(points, selection, maximize)
    if not math.isfinite(final.value):
        return TrialEnd(
            points, reason=f"reported a non-finite value ({final.value}) for metric {metric!r}"
        )
    return TrialEnd(points, final)
