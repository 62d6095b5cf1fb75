"""Inline SVG charts for the study report: no JavaScript, no external resources.

Every chart is a ``<svg>`` string built here, styled by CSS classes (no ``style=`` attributes, so a
strict Content-Security-Policy applies) and carrying ``data-*`` attributes (trial id, value) that
the browser tests read back. Tooltips are SVG ``<title>`` elements.

- :func:`history`: each trial's objective against its number, and the best value so far;
- :func:`parallel`: parallel coordinates of the parameters and the objective;
- :func:`importance`: how much of the objective's variance each parameter explains;
- :func:`slice_plot`: the objective against one parameter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass
class Axis:
    """Maps values to 0..1: ``linear``, ``log`` (positive values over a 20x span) or ``cat``."""

    kind: str
    lo: float = 0.0
    hi: float = 1.0
    cats: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, values: Sequence[Any], *, allow_log: bool = True, pad: float = 0.0) -> Axis:
        """The axis for ``values`` (None skipped); ``pad``: a margin, as a share of the span."""
        present = [v for v in values if v is not None]
        if present and all(_is_number(v) for v in present):
            nums = [float(v) for v in present]
            lo, hi = min(nums), max(nums)
            if allow_log and lo > 0 and hi / lo >= 20:
                lo, hi = math.log10(lo), math.log10(hi)
                return cls("log", lo - pad * (hi - lo), hi + pad * (hi - lo))
            if lo == hi:
                margin = abs(lo) * 0.1 or 1.0
                lo, hi = lo - margin, hi + margin
            return cls("linear", lo - pad * (hi - lo), hi + pad * (hi - lo))
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
            out = [((e - self.lo) / (self.hi - self.lo), f"1e{e}") for e in exps]
            return out or [(0.0, fmt(10**self.lo)), (1.0, fmt(10**self.hi))]
        return [((t - self.lo) / (self.hi - self.lo), fmt(t)) for t in nice_ticks(self.lo, self.hi)]


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
    xaxis = _IntAxis("linear", 0.5, n + 0.5)
    yaxis = Axis.of([t.value for t in ok] or [0.0, 1.0], allow_log=False, pad=0.06)
    out = [_svg_open("history", width, height, f"optimization history of {metric}")]
    out += _frame(left, top, w, h, xaxis, yaxis, "trial number", metric)
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
            y = top + h - yaxis.pos(v) * h
            cls = ' data-best="true"' if t.id == best_id else ""
            points.append(
                _point(x, y, t, f"trial {t.id}: {metric}={fmt(v)}", colour(good(v)), cls)
            )
        else:
            y = top + h - 6
            label = f"trial {t.id}: {t.state}"
            points.append(
                f'<path class="pt-failed" d="M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}'
                f'M{x - 4:.1f},{y + 4:.1f}L{x + 4:.1f},{y - 4:.1f}" data-trial="{_e(t.id)}">'
                f"<title>{_e(label)}</title></path>"
            )
        if best_so_far is not None:
            steps.append((x, top + h - yaxis.pos(best_so_far) * h))
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


def parallel(
    trials: Sequence[TrialResult], metric: str, minimize: bool, best_id: str | None
) -> str:
    """One vertical axis per parameter plus the objective; one line per succeeded trial.

    A conditional parameter a trial does not have leaves a gap in that trial's line.
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
    axes.append(Axis.of([t.value for t in ok] or [0.0], allow_log=False, pad=0.02))
    good = goodness_fn(trials, minimize)
    out = [_svg_open("parallel", width, height, "parallel coordinates")]
    lines: list[str] = []
    ordered = sorted(ok, key=lambda t: t.id == best_id)  # the best one drawn last, on top
    for t in ordered:
        vals: list[Any] = [t.parameters.get(n) for n in names] + [t.value]
        pts = [
            None if v is None else (left + i * step, top + h - axes[i].pos(v) * h)
            for i, v in enumerate(vals)
        ]
        d = ""
        pen_down = False
        for p in pts:
            if p is None:
                pen_down = False
                continue
            d += f"{'L' if pen_down else 'M'}{p[0]:.1f},{p[1]:.1f}"
            pen_down = True
        best = t.id == best_id
        cls = "pc-line best" if best else "pc-line"
        stroke = "#d62728" if best else colour(good(float(t.value or 0.0)))
        text = f"trial {t.id}: {metric}={fmt(t.value)}; " + " ".join(
            f"{k}={fmt(v)}" for k, v in t.parameters.items()
        )
        lines.append(
            f'<path class="{cls}" d="{d}" stroke="{stroke}" data-trial="{_e(t.id)}" '
            f'data-value="{_e(t.value)}"><title>{_e(text)}</title></path>'
        )
    out += lines
    for i, (name, axis) in enumerate(zip(columns, axes, strict=True)):
        x = left + i * step
        out.append(f'<line class="pc-axis" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + h}"/>')
        anchor = "start" if i == 0 else ("end" if i == len(columns) - 1 else "middle")
        kind = "objective" if i == len(columns) - 1 else "param"
        out.append(
            f'<text class="axis-label pc-name" data-axis="{_e(kind)}" x="{x:.1f}" y="{top - 14}" '
            f'text-anchor="{anchor}">{_e(name)}{" (log)" if axis.kind == "log" else ""}</text>'
        )
        for frac, label in axis.ticks():
            y = top + h - frac * h
            out.append(
                f'<text class="tick pc-tick" x="{x + 5:.1f}" y="{y + 4:.1f}">{_e(label)}</text>'
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
    yaxis = Axis.of([t.value for t in succeeded(trials)] or [0.0], allow_log=False, pad=0.06)
    pad = 0.06  # keep the points off the frame
    good = goodness_fn(trials, minimize)
    out = [_svg_open("slice", width, height, f"{metric} against {name}")]
    out[0] = out[0].replace("<svg ", f'<svg data-param="{_e(name)}" ', 1)
    out += _frame(left, top, w, h, _Padded(xaxis, pad), yaxis, name, metric)
    for t in ok:
        v = t.parameters[name]
        x = left + (pad + xaxis.pos(v) * (1 - 2 * pad)) * w
        y = top + h - yaxis.pos(float(t.value or 0.0)) * h
        extra = f' data-x="{_e(v)}"' + (' data-best="true"' if t.id == best_id else "")
        out.append(
            _point(
                x, y, t, f"trial {t.id}: {name}={fmt(v)}, {metric}={fmt(t.value)}",
                colour(good(float(t.value or 0.0))), extra, r=4.0,
            )
        )
    out.append("</svg>")
    return "".join(out)


class _Padded(Axis):
    """An axis whose ticks sit inside a margin of ``pad`` at both ends."""

    def __init__(self, inner: Axis, pad: float) -> None:
        super().__init__(inner.kind, inner.lo, inner.hi, inner.cats)
        self._inner = inner
        self._pad = pad

    def ticks(self) -> list[tuple[float, str]]:
        return [(self._pad + p * (1 - 2 * self._pad), s) for p, s in self._inner.ticks()]


class _IntAxis(Axis):
    """A linear axis with ticks on whole numbers only (trial numbers)."""

    def ticks(self) -> list[tuple[float, str]]:
        return [(p, s) for p, s in super().ticks() if float(s).is_integer()]
