"""The study report: one self-contained HTML file with the charts and the trials of a tuning run.

``hydra-vertex report (JOB_RESOURCE_NAME | SUMMARY.json) -o report.html`` and ``hydra-vertex run``
write it. The input is a :class:`~hydra_vertex.summary.Summary`: read from ``SUMMARY.json``
(:func:`load_summary`) or built from a ``HyperparameterTuningJob`` read through the aiplatform
client (:func:`summary_from_job`), so the same report comes from a job on Vertex or the emulator.

The page has: the optimization history (each trial and the best so far), parallel coordinates of the
parameters against the objective, the intermediate values per trial, a timeline of the trials,
parameter importance, a slice plot per parameter, the trials table (states, values, infeasible
reasons, early stops, W&B links when known), the winning overrides ready to paste, and the
retrain's metric and model. The charts are the :data:`CHARTS` table (where a Pareto-front chart for
several objectives will go).
Charts are inline SVG (:mod:`hydra_vertex.report_charts`): no script, no network, and a
Content-Security-Policy that allows nothing but the page's own style block.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from hydra_vertex import report_charts as charts
from hydra_vertex.errors import UsageError
from hydra_vertex.html_style import STYLE, csp
from hydra_vertex.reasons import strip_ansi
from hydra_vertex.summary import Summary
from hydra_vertex.trials import TrialResult, early_stopping_totals, short_reason

__all__ = [
    "csp",
    "load_summary",
    "render",
    "summary_from_job",
    "summary_from_tuning_job",
    "write_report",
]

def _e(value: object) -> str:
    return escape(strip_ansi(str(value)), quote=True)


# -- inputs -------------------------------------------------------------------------------------


def _trial_from_dict(d: Mapping[str, Any]) -> TrialResult:
    value = d.get("value")
    points: list[tuple[int, float]] = []
    for point in d.get("intermediate") or []:
        try:
            step, v = point
            points.append((int(step), float(v)))
        except (TypeError, ValueError):
            continue
    return TrialResult(
        id=str(d.get("id", "")),
        state=str(d.get("state", "")),
        parameters=dict(d.get("parameters") or {}),
        value=None if value is None else float(value),
        infeasible_reason=str(d.get("infeasible_reason") or ""),
        reason=str(d.get("reason") or ""),
        output_dir=d.get("output_dir") or None,
        start_time=d.get("start_time") or None,
        end_time=d.get("end_time") or None,
        intermediate=tuple(points),
        stopped_early=bool(d.get("stopped_early")),
        stop_reason=str(d.get("stop_reason") or ""),
        saved_steps=d.get("saved_steps"),
        saved_seconds=d.get("saved_seconds"),
        devices=None if d.get("devices") is None else tuple(str(x) for x in d["devices"]),
    )


def summary_from_dict(data: Mapping[str, Any]) -> Summary:
    """A :class:`Summary` from ``SUMMARY.json``'s mapping; unknown keys are ignored."""
    known = {f.name for f in dataclasses.fields(Summary)}
    kwargs = {k: v for k, v in data.items() if k in known and k != "trials"}
    for key in ("name", "metric", "direction"):
        kwargs.setdefault(key, "" if key != "direction" else "minimize")
    summary = Summary(**kwargs)
    summary.trials = [_trial_from_dict(t) for t in data.get("trials") or []]
    return summary


def load_summary(path: str | os.PathLike[str]) -> Summary:
    """Read ``SUMMARY.json``; a missing or malformed file is a :class:`UsageError` naming it."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"{str(p)!r} does not exist (expected a SUMMARY.json)") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{str(p)!r} is not a readable SUMMARY.json: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("trials", []), list):
        raise UsageError(f"{str(p)!r} is not a SUMMARY.json (no 'trials' list)")
    return summary_from_dict(data)


def wandb_links(data: Mapping[str, Any]) -> dict[str, str]:
    """Trial id -> W&B run URL from a summary mapping's ``wandb_runs`` (or trials' ``wandb_url``);
    only http(s) URLs are kept."""
    out: dict[str, str] = {}
    runs = data.get("wandb_runs")
    if isinstance(runs, Mapping):
        out.update({str(k): str(v) for k, v in runs.items()})
    for t in data.get("trials") or []:
        if isinstance(t, Mapping) and t.get("wandb_url"):
            out[str(t.get("id"))] = str(t["wandb_url"])
    return {k: v for k, v in out.items() if v.startswith(("https://", "http://"))}


_JOB_STATES = {
    "JOB_STATE_SUCCEEDED": "succeeded",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_CANCELLING": "cancelling",
}


def summary_from_tuning_job(job: Any) -> Summary:
    """A :class:`Summary` of a ``HyperparameterTuningJob`` (``aiplatform_v1`` proto): its trials
    typed by the job's study spec, the best trial (if any succeeded) and its overrides."""
    from dataclasses import replace

    from hydra_vertex._study_spec import goal_direction
    from hydra_vertex.errors import TuningError
    from hydra_vertex.jobs import state_name
    from hydra_vertex.local_details import from_environment
    from hydra_vertex.search_space import SearchSpace
    from hydra_vertex.trials import best_trial, trial_results, typed_parameters

    metric = job.study_spec.metrics[0]
    state = state_name(job)
    summary = Summary(
        name=(job.display_name or job.name.rsplit("/", 1)[-1]).removesuffix("-tuning"),
        metric=metric.metric_id,
        direction=goal_direction(metric, f"{job.name} study_spec.metrics[0]"),
        status=_JOB_STATES.get(state, "running"),
        tuning_job=job.name,
    )
    if job.error and job.error.message:
        summary.error = job.error.message
    space: SearchSpace | None
    try:
        space = SearchSpace.from_study_spec(job.study_spec, source=f"{job.name} study_spec")
    except Exception:  # a spec this library would not write: show the raw values
        space = None
    results = trial_results(job, from_environment(job.name))
    summary.trials = [
        replace(t, parameters=typed_parameters(space, t.parameters)) if space else t
        for t in results
    ]
    try:
        best = best_trial(job, space)
    except (TuningError, ValueError):
        best = None
    if best is not None:
        summary.best_trial_id, summary.best_value = best.trial_id, best.value
        summary.best_overrides = list(best.overrides)
        summary.best_parameters = next(
            (dict(t.parameters) for t in summary.trials if t.id == best.trial_id),
            dict(best.parameters),
        )
    with _suppress():
        summary.image_uri = job.trial_job_spec.worker_pool_specs[0].container_spec.image_uri
    with _suppress():
        if job.start_time and job.end_time:
            summary.elapsed_seconds = round((job.end_time - job.start_time).total_seconds(), 2)
    return summary


def _suppress() -> Any:
    import contextlib

    return contextlib.suppress(Exception)


def summary_from_job(resource_name: str, *, endpoint: str | None = None) -> Summary:
    """Read ``projects/P/locations/L/hyperparameterTuningJobs/ID`` through the aiplatform client
    (the emulator when ``HYDRA_VERTEX_EMULATOR`` is set) and summarise it."""
    from hydra_vertex.vertex import job_client

    parts = resource_name.strip("/").split("/")
    if (
        len(parts) != 6
        or parts[0] != "projects"
        or parts[2] != "locations"
        or parts[4] != "hyperparameterTuningJobs"
    ):
        raise UsageError(
            f"{resource_name!r} is neither a SUMMARY.json file nor a tuning job's resource name "
            "(projects/PROJECT/locations/LOCATION/hyperparameterTuningJobs/ID)"
        )
    client = job_client(parts[3], endpoint)
    job = client.get_hyperparameter_tuning_job(name="/".join(parts))
    return summary_from_tuning_job(job)


# -- the page -----------------------------------------------------------------------------------


def _value(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


def _params_text(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={charts.fmt(v)}" for k, v in params.items())


def _meta(summary: Summary) -> str:
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary.counts.items())) or "none"
    rows: list[tuple[str, str]] = [
        ("objective", f"{summary.direction} {summary.metric}"),
        ("trials", f"{len(summary.trials)} ({counts})"),
    ]
    if summary.elapsed_seconds:
        rows.append(("elapsed", f"{summary.elapsed_seconds:.1f} s"))
    totals = early_stopping_totals(summary.trials)
    if totals["stopped_trials"]:
        rows.append(
            (
                "stopped early",
                f"{totals['stopped_trials']} trials, saving about {totals['saved_steps']} steps "
                f"and {totals['saved_seconds']:.1f} s",
            )
        )
    for label, attr in (
        ("tuning job", "tuning_job"),
        ("retrain job", "retrain_job"),
        ("image", "image_uri"),
        ("model", "model_dir"),
        ("retrain output", "retrain_output_dir"),
        ("model URI", "model_uri"),
        ("pipeline log", "log"),
        ("trial logs", "trial_logs"),
    ):
        value = getattr(summary, attr)
        if value and attr == "model_dir" and summary.model_dir_empty:
            value = f"{value} (empty: the retrain wrote nothing under AIP_MODEL_DIR)"
        if value:
            rows.append((label, str(value)))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<dl class="meta" id="meta">{body}</dl>'


def _best(summary: Summary) -> str:
    if summary.best_trial_id is None:
        return (
            '<section id="best"><h2>Best trial</h2>'
            '<p class="muted" id="no-best">No trial succeeded.</p></section>'
        )
    parts = [
        '<section id="best"><h2>Best trial</h2><div class="best">',
        f'<p>Trial <strong id="best-trial">{_e(summary.best_trial_id)}</strong>: '
        f'{_e(summary.metric)} = <strong id="best-value" data-value="{_e(summary.best_value)}">'
        f"{_e(_value(summary.best_value))}</strong></p>",
    ]
    if summary.best_overrides:
        parts.append(
            "<p>The winner as Hydra overrides, ready to paste after the app's command:</p>"
            f'<pre class="paste" id="best-overrides">{_e(shlex.join(summary.best_overrides))}</pre>'
        )
        if summary.retrain_overrides:
            parts.append(
                "<p>The retrain added:</p>"
                f'<pre class="paste" id="retrain-overrides">'
                f"{_e(shlex.join(summary.retrain_overrides))}</pre>"
            )
    elif summary.best_parameters:
        parts.append(f'<pre class="paste">{_e(_params_text(summary.best_parameters))}</pre>')
    parts.append(_retrain(summary))
    parts.append("</div></section>")
    return "".join(parts)


def _retrain(summary: Summary) -> str:
    """The retrain's result: its final metric (when its run reported one) and the model."""
    if not (summary.retrain_job or summary.model_dir or summary.model_uri):
        return ""
    rows = []
    if summary.retrain_value is not None:
        rows.append(
            f'<p>The retrain: {_e(summary.metric)} = <strong id="retrain-value" '
            f'data-value="{_e(summary.retrain_value)}">{_e(_value(summary.retrain_value))}'
            "</strong></p>"
        )
    else:
        rows.append(
            '<p class="muted" id="retrain-value">The retrain reported no '
            f"{_e(summary.metric)} (see docs/report.md).</p>"
        )
    where = summary.model_dir or summary.model_uri
    if where:
        empty = " (empty: the retrain wrote nothing under AIP_MODEL_DIR)" if (
            summary.model_dir_empty
        ) else ""
        rows.append(f'<p>The model: <code id="model-location">{_e(where)}</code>{_e(empty)}</p>')
    return "".join(rows)


def _trials_table(summary: Summary, links: Mapping[str, str]) -> str:
    head = (
        "<tr><th>trial</th><th>state</th>"
        f"<th>{_e(summary.metric)}</th><th>parameters</th><th>infeasible reason</th>"
        "<th>output</th>"
        + ("<th>W&amp;B</th>" if links else "")
        + "</tr>"
    )
    rows = []
    for t in summary.trials:
        best = t.id == summary.best_trial_id
        link = links.get(t.id)
        wandb = ""
        if links:
            wandb = (
                f'<td><a href="{_e(link)}" rel="noopener noreferrer">run</a></td>'
                if link
                else "<td></td>"
            )
        stopped = (
            f' <span class="badge stopped" data-stopped="true" title="{_e(t.stop_reason)}">'
            "stopped early</span>"
            if t.stopped_early
            else ""
        )
        rows.append(
            f'<tr data-trial="{_e(t.id)}" data-state="{_e(t.state)}"'
            f'{" data-stopped-early=" + chr(34) + "true" + chr(34) if t.stopped_early else ""}'
            f'{" class=" + chr(34) + "best-row" + chr(34) if best else ""}>'
            f'<td class="num">{_e(t.id)}{" ★" if best else ""}</td>'
            f'<td><span class="badge {_e(t.state)}">{_e(t.state)}</span>{stopped}</td>'
            f'<td class="num" data-value="{_e(t.value)}">{_e(_value(t.value))}</td>'
            f'<td class="params">{_e(_params_text(t.parameters))}</td>'
            f'<td class="reason" title="{_e(t.infeasible_reason)}">'
            f"{_e(t.reason or short_reason(t.infeasible_reason))}</td>"
            f'<td class="path">{_e(t.output_dir or "")}</td>{wandb}</tr>'
        )
    return (
        '<section id="trials-section"><h2>Trials</h2>'
        f'<table id="trials"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></section>'
    )


# The charts of the report, in order: ``(section id, title, chart, caption)``; a chart is
# ``chart(summary) -> svg or None`` (None: nothing to draw for this study, the section is left out).
# The hook for multi-objective studies: a Pareto-front scatter (the objectives against each other,
# the non-dominated trials joined) goes in as one more entry, drawn when the summary carries each
# trial's ``values`` and ``pareto_trial_ids``.
Chart = tuple[str, str, Any, str]


def _minimize(summary: Summary) -> bool:
    return summary.direction != "maximize"


CHARTS: list[Chart] = [
    (
        "history",
        "Optimization history",
        lambda s: charts.history(s.trials, s.metric, _minimize(s), s.best_trial_id),
        "Each trial's {metric} (colour: better is darker), failed trials as crosses at the bottom, "
        "and the best value so far (line). Far outliers are clipped to the edge (triangles).",
    ),
    (
        "parallel",
        "Parallel coordinates",
        lambda s: charts.parallel(s.trials, s.metric, _minimize(s), s.best_trial_id),
        "One line per succeeded trial across its parameters and the objective; the best trial in "
        "red. A conditional parameter a trial lacks sits on the axis's n/a band.",
    ),
    (
        "curves",
        "Intermediate values",
        lambda s: charts.curves(s.trials, s.metric, _minimize(s), s.best_trial_id),
        "Each trial's intermediate {metric} (hydra_vertex.reporting.report(value, step=...)) "
        "against the step; the best trial in red, a cross where a trial was stopped early.",
    ),
    (
        "timeline",
        "Timeline",
        lambda s: charts.timeline(s.trials, s.best_trial_id),
        "When each trial ran, on the slot it ran in (parallel trials side by side); hover a bar "
        "for its duration.",
    ),
    (
        "importance",
        "Parameter importance",
        lambda s: charts.importance(s.trials),
        "Share of the objective's variance explained by each parameter's values (grouped; "
        "conditional parameters' absence counts as a group). A rough guide with few trials.",
    ),
]


def _charts(summary: Summary) -> str:
    trials = summary.trials
    ok = charts.succeeded(trials)
    if not ok:
        parts = [
            '<section id="charts"><h2>Charts</h2><p class="muted">No trial has a value yet: '
            "nothing to plot.</p></section>"
        ]
        timeline = charts.timeline(trials, summary.best_trial_id)
        if timeline is not None:
            parts.append(f'<section id="timeline"><h2>Timeline</h2><figure>{timeline}</figure>'
                         "</section>")
        return "".join(parts)
    parts = []
    for section, title, chart, caption in CHARTS:
        svg = chart(summary)
        if svg is None:
            continue
        parts.append(
            f'<section id="{section}"><h2>{_e(title)}</h2><figure>{svg}'
            f"<figcaption>{_e(caption.format(metric=summary.metric))}</figcaption></figure>"
            "</section>"
        )
    minimize = _minimize(summary)
    parts.append('<section id="slices"><h2>Slice plots</h2><div class="slices">')
    for name in charts.parameter_names(ok):
        plot = charts.slice_plot(trials, name, summary.metric, minimize, summary.best_trial_id)
        parts.append(
            f'<figure class="slice">{plot}'
            f"<figcaption>{_e(summary.metric)} against {_e(name)}</figcaption></figure>"
        )
    parts.append("</div></section>")
    return "".join(parts)


def render(
    summary: Summary,
    *,
    wandb_runs: Mapping[str, str] | None = None,
    generated: datetime | None = None,
) -> str:
    """The report as one HTML document (a string)."""
    links = {k: v for k, v in (wandb_runs or {}).items() if v.startswith(("https://", "http://"))}
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    title = f"{summary.name or 'study'}: {summary.direction} {summary.metric}"
    error = f'<div class="error" id="error">{_e(summary.error)}</div>' if summary.error else ""
    from hydra_vertex import __version__

    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp())}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>hydra-vertex report: {_e(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{_e(summary.name or "study")} '
        f'<span class="badge {_e(summary.status)}" id="status">{_e(summary.status)}</span></h1>'
        f'<div class="muted">hydra-vertex report · {_e(when)}</div></header>'
        f"{error}{_meta(summary)}{_best(summary)}{_charts(summary)}"
        f"{_trials_table(summary, links)}"
        f"<footer>Written by hydra-vertex {_e(__version__)}. Self-contained: no scripts, no "
        "network.</footer></body></html>\n"
    )


def write_report(
    summary: Summary,
    path: str | os.PathLike[str],
    *,
    wandb_runs: Mapping[str, str] | None = None,
) -> Path:
    """Write the report for ``summary`` to ``path`` (atomically) and return the path."""
    from hydra_vertex.files import atomic_write_text

    return atomic_write_text(path, render(summary, wandb_runs=wandb_runs))
