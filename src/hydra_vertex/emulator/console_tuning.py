"""The console's tuning job page: the trials table (one column per parameter, sortable through
query links, the best trial marked, durations and elapsed times, devices and early stops where the
store has them) and the charts of the report (history, intermediate values, timeline).

Trial values follow the study's measurement selection, the best trial the best-trial rules: both
come from :mod:`hydra_vertex.trials` over the job read as an ``aiplatform_v1`` proto, the same
code the report and the pipeline use. Fields the store adds beside the API's (``_early_stopped``,
the devices a trial ran on) are read defensively: any may be missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from hydra_vertex.emulator.console_page import (
    SEGMENT,
    Page,
    badge,
    e,
    fmt_time,
    fmt_value,
    seconds_between,
)
from hydra_vertex.report_charts import curves, duration, history, timeline
from hydra_vertex.trials import TrialResult

#: The store's names for the devices a trial ran on (the first one present is shown).
DEVICE_KEYS = ("devices", "_devices", "gpus", "_gpus")
_FIXED_SORTS = ("trial", "state", "value", "started", "duration")


def _public(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [_public(v) for v in obj]
    return obj


def results(res: Mapping[str, Any]) -> tuple[list[TrialResult], str, bool, TrialResult | None]:
    """``(trials, metric, minimize, best)`` of a stored tuning job."""
    from google.cloud.aiplatform_v1.types import HyperparameterTuningJob

    from hydra_vertex._study_spec import goal_direction
    from hydra_vertex.errors import HydraVertexError
    from hydra_vertex.trials import select_best, trial_results

    job = HyperparameterTuningJob.from_json(json.dumps(_public(dict(res))),
                                            ignore_unknown_fields=True)
    if not job.study_spec.metrics:
        return [], "", True, None
    metric = job.study_spec.metrics[0]
    minimize = goal_direction(metric) == "minimize"
    trials = trial_results(job)
    stopped = {str(t.get("id")) for t in res.get("trials") or [] if t.get("_early_stopped")}
    trials = [replace(t, stopped_early=True) if t.id in stopped else t for t in trials]
    try:
        best: TrialResult | None = select_best(trials, minimize=minimize)
    except HydraVertexError:
        best = None
    return trials, metric.metric_id, minimize, best


def counts(trials: list[TrialResult]) -> tuple[int, int, int]:
    """``(succeeded, failed, running)``."""
    return (
        sum(t.state == "SUCCEEDED" for t in trials),
        sum(t.state == "INFEASIBLE" for t in trials),
        sum(t.state in ("ACTIVE", "REQUESTED", "STOPPING") for t in trials),
    )


def _devices(raw: Mapping[str, Any]) -> str | None:
    for key in DEVICE_KEYS:
        value = raw.get(key)
        if value not in (None, "", [], {}):
            if isinstance(value, list):
                return ", ".join(str(v) for v in value)
            return fmt_value(value)
    return None


def _sort_key(column: str, trial: TrialResult, now: datetime) -> tuple[int, Any]:
    """Missing values last, whatever the order."""
    if column == "trial":
        return (0, int(trial.id) if trial.id.isdigit() else trial.id)
    if column == "state":
        return (0, trial.state)
    if column == "value":
        return (0, trial.value) if trial.value is not None else (1, 0)
    if column == "started":
        return (0, trial.start_time) if trial.start_time else (1, "")
    if column == "duration":
        took = seconds_between(trial.start_time, trial.end_time, now)
        return (0, took) if took is not None else (1, 0)
    value = trial.parameters.get(column.removeprefix("p:"))
    if value is None:
        return (2, "")
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def sort_trials(
    trials: list[TrialResult], column: str, descending: bool, now: datetime
) -> list[TrialResult]:
    present = [t for t in trials if _sort_key(column, t, now)[0] == 0]
    rest = [t for t in trials if _sort_key(column, t, now)[0] != 0]
    present.sort(key=lambda t: _sort_key(column, t, now)[1], reverse=descending)
    rest.sort(key=lambda t: _sort_key(column, t, now))
    return present + rest


def trials_section(
    res: Mapping[str, Any],
    collection: str,
    job_id: str,
    page: Page,
    query: Mapping[str, str],
    now: datetime | None = None,
) -> str:
    now = now or datetime.now(UTC)
    trials, metric, minimize, best = results(res)
    goal = "minimize" if minimize else "maximize"
    raw = {str(t.get("id")): t for t in res.get("trials") or []}
    ok, failed, live = counts(trials)
    parts = [
        f'<h2>Trials ({len(trials)} of {e(res.get("maxTrialCount", "?"))}, '
        f'{e(res.get("parallelTrialCount", "?"))} at a time; {e(goal)} {e(metric)})</h2>',
        f'<p id="counts">{ok} succeeded · {failed} failed · {live} running</p>',
    ]
    if best is not None:
        params = " ".join(f"{k}={fmt_value(v)}" for k, v in best.parameters.items())
        parts.append(
            f'<div class="best" id="best">Best trial <strong id="best-trial">{e(best.id)}'
            f'</strong>: {e(metric)} = <strong id="best-value" data-value="{e(best.value)}">'
            f"{e(fmt_value(best.value))}</strong> · <code>{e(params)}</code></div>"
        )
    if not trials:
        return "".join(parts) + '<p class="muted">no trials yet</p>'
    best_id = best.id if best else None
    parts.append(_charts(trials, metric, minimize, best_id, now))
    names: list[str] = []
    for t in trials:
        names += [k for k in t.parameters if k not in names]
    devices = {t.id: _devices(raw.get(t.id, {})) for t in trials}
    show_devices = any(devices.values())
    column = query.get("sort", "trial")
    if column not in _FIXED_SORTS and column.removeprefix("p:") not in names:
        column = "trial"
    descending = query.get("order") == "desc"
    shown = sort_trials(trials, column, descending, now)

    def head(label: str, key: str, cls: str = "") -> str:
        order = "asc" if key == column and descending else (
            "desc" if key == column else ("desc" if key == "value" and not minimize else "asc")
        )
        mark = (" ▼" if descending else " ▲") if key == column else ""
        sorted_cls = ' class="sorted"' if key == column else ""
        href = page.href("hyperparameterTuningJobs", job_id, sort=key, order=order)
        th_cls = f' class="{cls}"' if cls else ""
        return (
            f'<th{th_cls} data-sort="{e(key)}"><a{sorted_cls} href="{href}">'
            f"{e(label)}{mark}</a></th>"
        )

    header = [head("trial", "trial"), head("state", "state"), head(metric or "value", "value")]
    header += [head(n, f"p:{n}") for n in names]
    if show_devices:
        header.append('<th data-sort="devices">devices</th>')
    header += [head("started (UTC)", "started"), head("duration", "duration"),
               "<th>reason</th><th></th>"]
    rows = []
    for t in shown:
        r = raw.get(t.id, {})
        is_best = t.id == best_id
        took = seconds_between(t.start_time, t.end_time, now)
        live_cls = t.end_time is None and t.start_time is not None
        took_text = "" if took is None else duration(took) + (" so far" if live_cls else "")
        stop = r.get("_early_stopped")
        stopped = (
            f' <span class="badge stopped" data-stopped="true" title="{e(stop)}">'
            "stopped early</span>" if stop else ""
        )
        cells = [
            f'<td class="num">{e(t.id)}{" ★" if is_best else ""}</td>',
            f"<td>{badge(t.state)}{stopped}</td>",
            f'<td class="num" data-value="{e(t.value)}">{e(fmt_value(t.value))}</td>',
        ]
        cells += [
            f'<td class="num" data-param="{e(n)}">{e(fmt_value(t.parameters.get(n)))}</td>'
            for n in names
        ]
        if show_devices:
            cells.append(f'<td class="devices">{e(devices[t.id] or "")}</td>')
        log = page.link("log", collection, job_id, "trials", t.id, "log") if SEGMENT.match(
            t.id
        ) else ""
        cells += [
            f"<td>{e(fmt_time(t.start_time))}</td>",
            f'<td class="num{" running" if live_cls else ""}" data-seconds="'
            f'{"" if took is None else f"{took:.3f}"}">{e(took_text)}</td>',
            f'<td class="reason">{e(t.reason)}</td><td>{log}</td>',
        ]
        cls = ' class="best-row"' if is_best else ""
        rows.append(
            f'<tr data-trial="{e(t.id)}" data-state="{e(t.state)}"{cls}>{"".join(cells)}</tr>'
        )
    parts.append(
        f'<table id="trials"><thead><tr>{"".join(header)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return "".join(parts)


def _charts(
    trials: list[TrialResult], metric: str, minimize: bool, best_id: str | None, now: datetime
) -> str:
    figures = []
    if any(t.value is not None for t in trials):
        figures.append(("history", history(trials, metric, minimize, best_id)))
    learning = curves(trials, metric, minimize, best_id)
    if learning is not None:
        figures.append(("intermediate values", learning))
    gantt = timeline(trials, best_id, now)
    if gantt is not None:
        figures.append(("timeline", gantt))
    if not figures:
        return ""
    body = "".join(
        f"<figure>{svg}<figcaption>{e(caption)}</figcaption></figure>" for caption, svg in figures
    )
    return f'<section id="charts"><div class="charts">{body}</div></section>'
