"""Inline SVG charts for the study report: no JavaScript, no external resources.

Every chart is a ``<svg>`` string built here, styled by CSS classes (no ``style=`` attributes, so a
strict Content-Security-Policy applies) and carrying ``data-*`` attributes (trial id, value) that
the browser tests read back. Tooltips are SVG ``<title>`` elements.

- :func:`history`: each trial's objective against its number, and the best value so far;
- :func:`parallel`: parallel coordinates of the parameters and the objective; a conditional
  parameter a trial lacks sits on an "n/a" band at the foot of its axis, so every line reaches
  the objective;
- :func:`importance`: how much of the objective's variance each parameter explains;
- :func:`slice_plot`: the objective against one parameter;
- :func:`curves`: each trial's intermediate values against the step (early stops marked);
- :func:`timeline`: when each trial ran, on the slot it ran in (Gantt-style).

Integer parameters get whole-number ticks. Objective axes are robust (:class:`ValueAxis`): far
outliers (beyond 3 interquartile ranges) are clipped to the edge and drawn as triangles, so one
diverged trial does not flatten the rest. The console of the emulator draws the same charts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from hydra_vertex.trials import TrialResult

# A colour-blind-safe ramp (viridis stops), from the best objective to the worst.
_RAMP = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A number for a label: 4 significant digits; anything else as text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def colour(goodness: float) -> str:
    """``goodness`` 1.0 (best) .. 0.0 (worst) to a hex colour on the ramp."""
    g = min(1.0, max(0.0, goodness))
    x = (1.0 - g) * (len(_RAMP) - 1)
    i = min(int(x), len(_RAMP) - 2)
    f = x - i
    a, b = _RAMP[i], _RAMP[i + 1]
    rgb = [
        round(int(a[k : k + 2], 16) * (1 - f) + int(b[k : k + 2], 16) * f) for k in (1, 3, 5)
    ]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _integral(v: Any) -> bool:
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


@dataclass
class Axis:
    """Maps values to 0..1: ``linear``, ``log`` (positive values over a 20x span) or ``cat``.
    ``integer``: every value is a whole number, so ticks are whole numbers too."""

    kind: str
    lo: float = 0.0
    hi: float = 1.0
    cats: list[str] = field(default_factory=list)
    integer: bool = False

    @classmethod
    def of(cls, values: Sequence[Any], *, allow_log: bool = True, pad: float = 0.0) -> Axis:
        """The axis for ``values`` (None skipped); ``pad``: a margin, as a share of the span."""
        present = [v for v in values if v is not None]
        if present and all(_is_number(v) for v in present):
            nums = [float(v) for v in present]
            integer = all(_integral(v) for v in present)
            lo, hi = min(nums), max(nums)
            if allow_log and lo > 0 and hi / lo >= 20:
                lo, hi = math.log10(lo), math.log10(hi)
                return cls("log", lo - pad * (hi - lo), hi + pad * (hi - lo), integer=integer)
            if lo == hi:
                margin = 1.0 if integer else (abs(lo) * 0.1 or 1.0)
                lo, hi = lo - margin, hi + margin
            return cls("linear", lo - pad * (hi - lo), hi + pad * (hi - lo), integer=integer)
        cats = sorted({str(v) for v in present})
        return cls("cat", cats=cats or [""])

    def pos(self, value: Any) -> float:
        if self.kind == "cat":
            if len(self.cats) == 1:
                return 0.5
            return self.cats.index(str(value)) / (len(self.cats) - 1)
        v = float(value)
        if self.kind == "log":
            v = math.log10(v)
        return 0.5 if self.hi == self.lo else (v - self.lo) / (self.hi - self.lo)

    def ticks(self) -> list[tuple[float, str]]:
        if self.kind == "cat":
            return [(self.pos(c), c if len(c) <= 18 else c[:17] + "…") for c in self.cats]
        if self.kind == "log":
            first, last = math.ceil(self.lo - 1e-9), math.floor(self.hi + 1e-9)
            exps = list(range(first, last + 1))
            if len(exps) > 6:
                step = math.ceil(len(exps) / 6)
                exps = exps[::step]
            label = (lambda e: f"{10**e:,}") if self.integer else (lambda e: f"1e{e}")
            out = [((e - self.lo) / (self.hi - self.lo), label(e)) for e in exps if e >= 0 or
                   not self.integer]
            return out or [(0.0, fmt(10**self.lo)), (1.0, fmt(10**self.hi))]
        values = nice_ticks(self.lo, self.hi)
        if self.integer:
            values = [t for t in values if float(t).is_integer()]
            if len(values) < 2:
                first, last = math.ceil(self.lo), math.floor(self.hi)
                values = [float(v) for v in range(first, last + 1)][:10]
            return [((t - self.lo) / (self.hi - self.lo), str(int(t))) for t in values]
        return [((t - self.lo) / (self.hi - self.lo), fmt(t)) for t in values]


def _quantile(ordered: Sequence[float], q: float) -> float:
    x = q * (len(ordered) - 1)
    i = int(x)
    j = min(i + 1, len(ordered) - 1)
    return ordered[i] + (ordered[j] - ordered[i]) * (x - i)


def robust_range(values: Sequence[float], fences: float = 3.0) -> tuple[float, float] | None:
    """``(lo, hi)`` of the values within ``fences`` interquartile ranges of the quartiles, when
    some fall outside (at least 5 values); None when nothing needs clipping."""
    ordered = sorted(float(v) for v in values)
    if len(ordered) < 5:
        return None
    q1, q3 = _quantile(ordered, 0.25), _quantile(ordered, 0.75)
    spread = q3 - q1
    if spread <= 0:
        return None
    inside = [v for v in ordered if q1 - fences * spread <= v <= q3 + fences * spread]
    if len(inside) == len(ordered):
        return None
    return inside[0], inside[-1]


@dataclass
class ValueAxis:
    """An objective axis that clips far outliers (:func:`robust_range`): :meth:`place` gives a
    value's position (0..1, clamped) and ``"high"``/``"low"`` when it was clipped."""

    axis: Axis
    lo: float | None = None  # values below are clipped
    hi: float | None = None  # values above are clipped

    @classmethod
    def of(cls, values: Sequence[float], pad: float = 0.06) -> ValueAxis:
        nums = [float(v) for v in values]
        bounds = robust_range(nums)
        if bounds is None:
            return cls(Axis.of(nums or [0.0, 1.0], allow_log=False, pad=pad))
        lo, hi = bounds
        inside = [v for v in nums if lo <= v <= hi]
        clipped_lo = lo if min(nums) < lo else None
        clipped_hi = hi if max(nums) > hi else None
        return cls(Axis.of(inside, allow_log=False, pad=pad), clipped_lo, clipped_hi)

    def place(self, value: float) -> tuple[float, str | None]:
        if self.hi is not None and value > self.hi:
            return 1.0, "high"
        if self.lo is not None and value < self.lo:
            return 0.0, "low"
        return min(1.0, max(0.0, self.axis.pos(value))), None


def _clipped(x: float, y: float, side: str, trial: TrialResult, text: str) -> str:
    """A triangle at the edge of the plot for a clipped value, pointing out of it."""
    d = (f"M{x:.1f},{y - 6:.1f}L{x - 5:.1f},{y + 3:.1f}L{x + 5:.1f},{y + 3:.1f}Z"
         if side == "high" else
         f"M{x:.1f},{y + 6:.1f}L{x - 5:.1f},{y - 3:.1f}L{x + 5:.1f},{y - 3:.1f}Z")
    return (
        f'<path class="pt-clipped" d="{d}" data-trial="{_e(trial.id)}" data-clipped="{side}" '
        f'data-value="{_e(trial.value)}"><title>{_e(text)} (off the scale)</title></path>'
    )


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values inside [lo, hi] (about ``count`` of them)."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    t = first
    while t <= hi + step * 1e-9:
        out.append(round(t, 12))
        t += step
    return out


def _svg_open(kind: str, width: int, height: int, label: str) -> str:
    return (
        f'<svg class="chart-svg" data-chart="{_e(kind)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(label)}">'
    )


def _point(
    x: float, y: float, trial: TrialResult, text: str, fill: str, extra: str = "", r: float = 4.5
) -> str:
    return (
        f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}" '
        f'data-trial="{_e(trial.id)}" data-value="{_e(trial.value)}"{extra}>'
        f"<title>{_e(text)}</title></circle>"
    )


def _frame(
    left: float, top: float, w: float, h: float, xaxis: Axis, yaxis: Axis, xlabel: str, ylabel: str
) -> list[str]:
    """Axes, ticks, grid lines and labels of an x/y chart."""
    out = [f'<rect class="plot-bg" x="{left}" y="{top}" width="{w}" height="{h}"/>']
    for p, label in yaxis.ticks():
        y = top + h - p * h
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_e(label)}</text>"
        )
    for p, label in xaxis.ticks():
        x = left + p * w
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + h}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{top + h + 16}" text-anchor="middle">'
            f"{_e(label)}</text>"
        )
    out.append(
        f'<text class="axis-label" x="{left + w / 2:.1f}" y="{top + h + 36}" '
        f'text-anchor="middle">{_e(xlabel)}</text>'
    )
    out.append(
        f'<text class="axis-label" x="14" y="{top + h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + h / 2:.1f})">{_e(ylabel)}</text>'
    )
    return out


def succeeded(trials: Sequence[TrialResult]) -> list[TrialResult]:
    return [t for t in trials if t.state == "SUCCEEDED" and t.value is not None]


def goodness_fn(trials: Sequence[TrialResult], minimize: bool) -> Any:
    values = [float(t.value) for t in succeeded(trials) if t.value is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)

    def good(value: float) -> float:
        if hi == lo:
            return 1.0
        g = (value - lo) / (hi - lo)
        return 1.0 - g if minimize else g

    return good


def history(trials: Sequence[TrialResult], metric: str, minimize: bool, best_id: str | None) -> str:
    """Objective per trial (in trial order) and the best value so far as a step line."""
    width, height, left, top, right, bottom = 720, 320, 70, 20, 20, 50
    w, h = width - left - right, height - top - bottom
    ok = succeeded(trials)
    n = len(trials)
    xaxis = Axis("linear", 0.5, n + 0.5, integer=True)
    values = ValueAxis.of([float(t.value) for t in ok if t.value is not None])
    out = [_svg_open("history", width, height, f"optimization history of {metric}")]
    out += _frame(left, top, w, h, xaxis, values.axis, "trial number", metric)
    good = goodness_fn(trials, minimize)
    best_so_far: float | None = None
    steps: list[tuple[float, float]] = []
    points: list[str] = []
    for i, t in enumerate(trials, start=1):
        x = left + xaxis.pos(i) * w
        if t.state == "SUCCEEDED" and t.value is not None:
            v = float(t.value)
            if best_so_far is None or (v < best_so_far if minimize else v > best_so_far):
                best_so_far = v
            frac, side = values.place(v)
            y = top + h - frac * h
            label = f"trial {t.id}: {metric}={fmt(v)}"
            if side is not None:
                points.append(_clipped(x, y, side, t, label))
                continue
            cls = ' data-best="true"' if t.id == best_id else ""
            points.append(_point(x, y, t, label, colour(good(v)), cls))
        else:
            y = top + h - 6
            label = f"trial {t.id}: {t.state}"
            points.append(
                f'<path class="pt-failed" d="M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}'
                f'M{x - 4:.1f},{y + 4:.1f}L{x + 4:.1f},{y - 4:.1f}" data-trial="{_e(t.id)}">'
                f"<title>{_e(label)}</title></path>"
            )
        if best_so_far is not None:
            steps.append((x, top + h - values.place(best_so_far)[0] * h))
    if steps:
        d = f"M{steps[0][0]:.1f},{steps[0][1]:.1f}"
        for (_, y0), (x1, y1) in itertools.pairwise(steps):
            d += f"H{x1:.1f}" if y1 == y0 else f"H{x1:.1f}V{y1:.1f}"
        out.append(
            f'<path class="best-line" d="{d}" data-best-value="{_e(best_so_far)}">'
            f"<title>best {_e(metric)} so far</title></path>"
        )
    out += points
    out.append(
        f'<g class="legend"><line class="best-line" x1="{left + w - 150}" y1="{top + 10}" '
        f'x2="{left + w - 126}" y2="{top + 10}"/><text class="tick" x="{left + w - 120}" '
        f'y="{top + 14}">best so far</text></g>'
    )
    out.append("</svg>")
    return "".join(out)


def parameter_names(trials: Sequence[TrialResult]) -> list[str]:
    names: list[str] = []
    for t in trials:
        for k in t.parameters:
            if k not in names:
                names.append(k)
    return names


NA_BAND = 0.12  # the share of a parameter axis kept at its foot for "n/a"


def parallel(
    trials: Sequence[TrialResult], metric: str, minimize: bool, best_id: str | None
) -> str:
    """One vertical axis per parameter plus the objective; one line per succeeded trial.

    A conditional parameter a trial does not have puts that trial's line on the axis's "n/a"
    band (its foot, below a dashed rule), so every line runs through to the objective.
    """
    ok = succeeded(trials)
    names = parameter_names(ok)
    columns = [*names, metric]
    spacing = 150
    left, top, bottom = 70, 40, 40
    width = max(520, left * 2 + spacing * (len(columns) - 1))
    height = 360
    h = height - top - bottom
    step = (width - 2 * left) / max(1, len(columns) - 1)
    axes = [Axis.of([t.parameters.get(n) for t in ok]) for n in names]
    partial = [any(t.parameters.get(n) is None for t in ok) for n in names]
    objective = ValueAxis.of([float(t.value) for t in ok if t.value is not None], pad=0.02)
    good = goodness_fn(trials, minimize)

    def y_of(i: int, value: Any) -> float:
        if i == len(names):  # the objective
            return top + h - objective.place(float(value))[0] * h
        if value is None:
            return top + h
        frac = axes[i].pos(value)
        if partial[i]:
            frac = NA_BAND + frac * (1 - NA_BAND)
        return top + h - frac * h

    out = [_svg_open("parallel", width, height, "parallel coordinates")]
    lines: list[str] = []
    ordered = sorted(ok, key=lambda t: t.id == best_id)  # the best one drawn last, on top
    for t in ordered:
        vals: list[Any] = [t.parameters.get(n) for n in names] + [t.value]
        d = "".join(
            f"{'M' if i == 0 else 'L'}{left + i * step:.1f},{y_of(i, v):.1f}"
            for i, v in enumerate(vals)
        )
        missing = [n for n in names if t.parameters.get(n) is None]
        best = t.id == best_id
        cls = "pc-line best" if best else "pc-line"
        stroke = "#d62728" if best else colour(good(float(t.value or 0.0)))
        text = f"trial {t.id}: {metric}={fmt(t.value)}; " + " ".join(
            f"{k}={fmt(v)}" for k, v in t.parameters.items()
        )
        flag = ' data-best="true"' if best else ""
        lines.append(
            f'<path class="{cls}" d="{d}" stroke="{stroke}" data-trial="{_e(t.id)}" '
            f'data-value="{_e(t.value)}" data-points="{len(vals)}" '
            f'data-na="{_e(",".join(missing))}"{flag}><title>{_e(text)}</title></path>'
        )
    out += lines
    for i, name in enumerate(columns):
        x = left + i * step
        is_objective = i == len(columns) - 1
        axis = objective.axis if is_objective else axes[i]
        out.append(
            f'<line class="pc-axis" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + h}" '
            f'data-axis="{_e(name)}"/>'
        )
        anchor = "start" if i == 0 else ("end" if is_objective else "middle")
        kind = "objective" if is_objective else "param"
        out.append(
            f'<text class="axis-label pc-name" data-axis="{_e(kind)}" x="{x:.1f}" y="{top - 14}" '
            f'text-anchor="{anchor}">{_e(name)}{" (log)" if axis.kind == "log" else ""}</text>'
        )
        band = not is_objective and partial[i]
        for frac, label in axis.ticks():
            if band:
                frac = NA_BAND + frac * (1 - NA_BAND)
            y = top + h - frac * h
            out.append(
                f'<text class="tick pc-tick" x="{x + 5:.1f}" y="{y + 4:.1f}">{_e(label)}</text>'
            )
        if band:
            rule = top + h - NA_BAND * h * 0.5
            out.append(
                f'<line class="na-rule" x1="{x - 8:.1f}" y1="{rule:.1f}" x2="{x + 8:.1f}" '
                f'y2="{rule:.1f}"/><text class="tick pc-tick na" x="{x + 5:.1f}" '
                f'y="{top + h + 4:.1f}">n/a</text>'
            )
        if is_objective and (objective.hi is not None or objective.lo is not None):
            out.append(
                f'<text class="tick pc-tick" x="{x - 5:.1f}" y="{top + h + 18}" '
                f'text-anchor="end">outliers clipped</text>'
            )
    out.append("</svg>")
    return "".join(out)


def importances(trials: Sequence[TrialResult]) -> dict[str, float]:
    """Each parameter's share of the objective's variance between its groups (η², normalised).

    Numeric parameters are cut into up to four quantile bins, categories are their own groups,
    and trials without the parameter (a conditional one) form one more group. Shares sum to 1
    (all 0 when the objective does not vary). A rough, dependency-free stand-in for fANOVA that
    also covers conditional parameters.
    """
    ok = succeeded(trials)
    names = parameter_names(ok)
    values = [float(t.value or 0.0) for t in ok]
    if len(ok) < 2:
        return dict.fromkeys(names, 0.0)
    mean = sum(values) / len(values)
    total = sum((v - mean) ** 2 for v in values)
    raw: dict[str, float] = {}
    for name in names:
        column = [t.parameters.get(name) for t in ok]
        groups: dict[str, list[float]] = {}
        nums = sorted(float(v) for v in column if _is_number(v))
        numeric = len(nums) == sum(v is not None for v in column) and len(nums) > 0
        bins = min(4, len(set(nums))) if numeric else 0
        cuts = [nums[min(len(nums) - 1, (len(nums) * k) // bins)] for k in range(1, bins)]
        for v, y in zip(column, values, strict=True):
            if v is None:
                key = "<absent>"
            elif numeric:
                key = str(sum(float(v) >= c for c in cuts))
            else:
                key = str(v)
            groups.setdefault(key, []).append(y)
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        raw[name] = between / total if total > 0 else 0.0
    s = sum(raw.values())
    return {k: (v / s if s > 0 else 0.0) for k, v in raw.items()}


def importance(trials: Sequence[TrialResult]) -> str:
    imp = sorted(importances(trials).items(), key=lambda kv: (-kv[1], kv[0]))
    left, top, bar_h, gap, width = 180, 10, 22, 8, 720
    w = width - left - 70
    height = top * 2 + len(imp) * (bar_h + gap)
    out = [_svg_open("importance", width, max(height, 40), "parameter importance")]
    for i, (name, share) in enumerate(imp):
        y = top + i * (bar_h + gap)
        out.append(
            f'<text class="tick" x="{left - 8}" y="{y + bar_h * 0.7:.1f}" text-anchor="end">'
            f"{_e(name)}</text>"
            f'<rect class="bar" x="{left}" y="{y}" width="{max(1.0, share * w):.1f}" '
            f'height="{bar_h}" data-param="{_e(name)}" data-importance="{share:.4f}">'
            f"<title>{_e(name)}: {share:.1%}</title></rect>"
            f'<text class="tick" x="{left + max(1.0, share * w) + 6:.1f}" '
            f'y="{y + bar_h * 0.7:.1f}">{share:.1%}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def slice_plot(
    trials: Sequence[TrialResult], name: str, metric: str, minimize: bool, best_id: str | None
) -> str:
    """The objective against one parameter (trials that have it)."""
    ok = [t for t in succeeded(trials) if t.parameters.get(name) is not None]
    width, height, left, top, right, bottom = 360, 260, 64, 14, 16, 48
    w, h = width - left - right, height - top - bottom
    xaxis = Axis.of([t.parameters[name] for t in ok] or [0.0])
    values = ValueAxis.of([float(t.value) for t in succeeded(trials) if t.value is not None])
    pad = 0.06  # keep the points off the frame
    good = goodness_fn(trials, minimize)
    out = [_svg_open("slice", width, height, f"{metric} against {name}")]
    out[0] = out[0].replace("<svg ", f'<svg data-param="{_e(name)}" ', 1)
    out += _frame(left, top, w, h, _Padded(xaxis, pad), values.axis, name, metric)
    for t in ok:
        v = t.parameters[name]
        x = left + (pad + xaxis.pos(v) * (1 - 2 * pad)) * w
        frac, side = values.place(float(t.value or 0.0))
        y = top + h - frac * h
        label = f"trial {t.id}: {name}={fmt(v)}, {metric}={fmt(t.value)}"
        if side is not None:
            out.append(_clipped(x, y, side, t, label))
            continue
        extra = f' data-x="{_e(v)}"' + (' data-best="true"' if t.id == best_id else "")
        out.append(_point(x, y, t, label, colour(good(float(t.value or 0.0))), extra, r=4.0))
    out.append("</svg>")
    return "".join(out)


class _Padded(Axis):
    """An axis whose ticks sit inside a margin of ``pad`` at both ends."""

    def __init__(self, inner: Axis, pad: float) -> None:
        super().__init__(inner.kind, inner.lo, inner.hi, inner.cats, inner.integer)
        self._inner = inner
        self._pad = pad

    def ticks(self) -> list[tuple[float, str]]:
        return [(self._pad + p * (1 - 2 * self._pad), s) for p, s in self._inner.ticks()]


def curves(
    trials: Sequence[TrialResult], metric: str, minimize: bool, best_id: str | None
) -> str | None:
    """Each trial's intermediate values against the step; None unless some trial reported two
    or more (a trial's final report alone is a measurement too: that is no curve). A trial
    stopped early ends with a cross."""
    shown = [t for t in trials if t.intermediate]
    if not any(len(t.intermediate) > 1 for t in shown):
        return None
    width, height, left, top, right, bottom = 720, 300, 70, 20, 20, 50
    w, h = width - left - right, height - top - bottom
    steps = [s for t in shown for s, _ in t.intermediate]
    xaxis = Axis.of(steps if len(set(steps)) > 1 else [*steps, steps[0] + 1], allow_log=False)
    values = ValueAxis.of([v for t in shown for _, v in t.intermediate])
    good = goodness_fn(trials, minimize)
    out = [_svg_open("curves", width, height, f"intermediate values of {metric}")]
    out += _frame(left, top, w, h, xaxis, values.axis, "step", metric)
    ordered = sorted(shown, key=lambda t: t.id == best_id)
    for t in ordered:
        pts = [
            (left + xaxis.pos(s) * w, top + h - values.place(v)[0] * h) for s, v in t.intermediate
        ]
        d = "".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(pts))
        best = t.id == best_id
        stroke = "#d62728" if best else (
            colour(good(float(t.value))) if t.value is not None else "#8a93a0"
        )
        last_step, last_value = t.intermediate[-1]
        text = (
            f"trial {t.id}: {len(t.intermediate)} values, last {metric}={fmt(last_value)} at "
            f"step {last_step}"
        )
        if len(pts) == 1:
            d += "h0.01"  # one point: a dot (round caps)
        flag = ' data-best="true"' if best else ""
        out.append(
            f'<path class="curve{" best" if best else ""}" d="{d}" stroke="{stroke}" '
            f'data-trial="{_e(t.id)}" data-steps="{len(pts)}"{flag}>'
            f"<title>{_e(text)}</title></path>"
        )
        if t.stopped_early:
            x, y = pts[-1]
            out.append(
                f'<path class="stop-mark" d="M{x - 5:.1f},{y - 5:.1f}L{x + 5:.1f},{y + 5:.1f}'
                f'M{x - 5:.1f},{y + 5:.1f}L{x + 5:.1f},{y - 5:.1f}" data-trial="{_e(t.id)}" '
                f'data-stopped="true"><title>trial {_e(t.id)} stopped early at step '
                f"{last_step}</title></path>"
            )
    out.append("</svg>")
    return "".join(out)


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or an offset; any number of fraction digits)."""
    if not text:
        return None
    value = str(text).strip().replace("Z", "+00:00")
    head, dot, rest = value.partition(".")
    if dot:
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def slots(
    trials: Sequence[TrialResult], now: datetime
) -> list[tuple[TrialResult, int, float, float]]:
    """``(trial, slot, start, end)`` (seconds since the first start) of the trials with a start
    time, each on the lowest slot free when it started; a running trial ends ``now``."""
    timed = []
    for t in trials:
        start = parse_time(t.start_time)
        if start is not None:
            end = parse_time(t.end_time) or now
            timed.append((t, start, max(end, start)))
    if not timed:
        return []
    timed.sort(key=lambda item: (item[1], item[0].id))
    origin = timed[0][1]
    busy: list[float] = []  # the end of each slot's last trial
    out = []
    for t, start, end in timed:
        s0, s1 = (start - origin).total_seconds(), (end - origin).total_seconds()
        slot = next((i for i, free in enumerate(busy) if free <= s0 + 1e-3), len(busy))
        if slot == len(busy):
            busy.append(s1)
        else:
            busy[slot] = s1
        out.append((t, slot, s0, s1))
    return out


def timeline(
    trials: Sequence[TrialResult], best_id: str | None, now: datetime | None = None
) -> str | None:
    """When each trial ran: one bar per trial from its start to its end (now, while it runs), on
    the slot it ran in. None when no trial has a start time."""
    placed = slots(trials, now or datetime.now(UTC))
    if not placed:
        return None
    count = max(slot for _, slot, _, _ in placed) + 1
    left, top, right, bottom, row = 70, 14, 20, 46, 24
    width = 720
    w = width - left - right
    h = count * row
    height = top + h + bottom
    span = max(end for _, _, _, end in placed) or 1.0
    xaxis = Axis("linear", 0.0, span)
    out = [_svg_open("timeline", width, height, "trial timeline")]
    out.append(f'<rect class="plot-bg" x="{left}" y="{top}" width="{w}" height="{h}"/>')
    for value in nice_ticks(0.0, span):
        x = left + xaxis.pos(value) * w
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + h}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{top + h + 16}" text-anchor="middle">'
            f"{_e(duration(value))}</text>"
        )
    out.append(
        f'<text class="axis-label" x="{left + w / 2:.1f}" y="{top + h + 36}" '
        f'text-anchor="middle">time since the first trial started</text>'
    )
    for slot in range(count):
        y = top + slot * row
        out.append(
            f'<text class="tick" x="{left - 8}" y="{y + row * 0.65:.1f}" text-anchor="end">'
            f"slot {slot + 1}</text>"
        )
    for t, slot, s0, s1 in placed:
        x0, x1 = left + xaxis.pos(s0) * w, left + xaxis.pos(s1) * w
        y = top + slot * row + 3
        running = t.end_time is None
        state = "running" if running else t.state
        cls = f"tl-bar {_e(state)}" + (" best" if t.id == best_id else "")
        text = f"trial {t.id}: {state}, {duration(s1 - s0)}" + (
            f", {fmt(t.value)}" if t.value is not None else ""
        )
        out.append(
            f'<rect class="{cls}" x="{x0:.1f}" y="{y:.1f}" width="{max(2.0, x1 - x0):.1f}" '
            f'height="{row - 6}" data-trial="{_e(t.id)}" data-slot="{slot + 1}" '
            f'data-start="{s0:.3f}" data-end="{s1:.3f}"><title>{_e(text)}</title></rect>'
        )
        if x1 - x0 > 26:
            out.append(
                f'<text class="tl-label" x="{x0 + 4:.1f}" y="{y + row * 0.55:.1f}">'
                f"{_e(t.id)}</text>"
            )
    out.append("</svg>")
    return "".join(out)
