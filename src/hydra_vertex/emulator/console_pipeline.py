"""The console's pipeline run page: the run's outputs (``best_overrides``, ``best_value``, ...),
the tuning and retrain jobs it created (linked), and its tasks in DAG order with their times,
outputs and errors (:mod:`hydra_vertex.pipeline_dag`, which reads nested task details and a
missing spec defensively)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hydra_vertex.emulator.console_page import (
    Page,
    badge,
    e,
    fmt_time,
    fmt_value,
    seconds_between,
)
from hydra_vertex.pipeline_dag import created_jobs, ordered_tasks, outputs
from hydra_vertex.report_charts import duration

_OUTPUT_ORDER = ("best_value", "best_trial_id", "best_overrides", "model_dir", "tuning_job",
                 "retrain_job", "image_uri")


def jobs_of_run(store: Any, res: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(collection, id, resource)`` of the tuning and custom jobs a run created: those its task
    outputs name, else (while they are not known yet) the app's ``<name>-tuning`` and
    ``<name>-retrain`` jobs created while it ran."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for name in created_jobs(res):
        collection, job_id = name.split("/")[-2:]
        rec = store.get(collection, job_id) if collection in store_collections() else None
        if rec is not None:
            found.append((collection, job_id, rec.get("resource", {})))
    if found:
        return found
    values = (res.get("runtimeConfig") or {}).get("parameterValues") or {}
    app = values.get("app_name")
    start, end = str(res.get("createTime") or ""), str(res.get("endTime") or "")
    if not app or not start:
        return []
    for collection, suffix in (("hyperparameterTuningJobs", "tuning"), ("customJobs", "retrain")):
        for job_id, rec in store.items(collection):
            job = rec.get("resource", {})
            created = str(job.get("createTime") or "")
            if job.get("displayName") == f"{app}-{suffix}" and created >= start and (
                not end or created <= end
            ):
                found.append((collection, job_id, job))
    return found


def store_collections() -> tuple[str, ...]:
    from hydra_vertex.emulator.store import COLLECTIONS

    return COLLECTIONS


def _output_text(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return shlex.join(value)
    return fmt_value(value)


def pipeline_section(
    store: Any, res: Mapping[str, Any], page: Page, now: datetime | None = None
) -> str:
    now = now or datetime.now(UTC)
    tasks = ordered_tasks(res)
    parts: list[str] = []
    root = next((t for depth, t in tasks if depth == 0), None)
    results = outputs(root) if root is not None else {}
    if results:
        keys = [k for k in _OUTPUT_ORDER if k in results] + sorted(
            k for k in results if k not in _OUTPUT_ORDER
        )
        items = "".join(
            f'<dt>{e(k)}</dt><dd id="output-{e(k)}">'
            + (f'<pre class="paste">{e(_output_text(results[k]))}</pre>'
               if k == "best_overrides" else e(_output_text(results[k])))
            + "</dd>"
            for k in keys
        )
        parts.append(f'<h2>Outputs</h2><dl class="meta" id="outputs">{items}</dl>')
    jobs = jobs_of_run(store, res)
    if jobs:
        links = "".join(
            f'<li data-job="{e(collection)}/{e(job_id)}">'
            f"{page.link(str(job.get('displayName') or job_id), collection, job_id)} "
            f"{badge(job.get('state'))} <span class=\"muted\">{e(job_id)}</span></li>"
            for collection, job_id, job in jobs
        )
        parts.append(f'<h2>Jobs it created</h2><ul id="created-jobs">{links}</ul>')
    if not tasks:
        return "".join(parts) + '<p class="muted">no tasks yet</p>'
    rows = []
    for depth, t in tasks:
        took = seconds_between(t.get("startTime"), t.get("endTime"), now)
        running = t.get("startTime") and not t.get("endTime")
        took_text = "" if took is None else duration(took) + (" so far" if running else "")
        outs = outputs(t) if depth else {}
        out_text = "; ".join(f"{k}={_output_text(v)}" for k, v in outs.items())
        error = (t.get("error") or {}).get("message", "")
        indent = f' class="indent{min(depth, 3)}"' if depth else ""
        rows.append(
            f'<tr data-task="{e(t.get("taskName", ""))}" data-depth="{depth}">'
            f'<td{indent}>{e(t.get("taskName", ""))}</td><td>{badge(t.get("state"))}</td>'
            f"<td>{e(fmt_time(t.get('startTime')))}</td><td>{e(fmt_time(t.get('endTime')))}</td>"
            f'<td class="num">{e(took_text)}</td><td class="params">{e(out_text)}</td>'
            f'<td class="reason">{e(error)}</td></tr>'
        )
    parts.append(
        '<h2>Tasks</h2><table id="tasks"><thead><tr><th>task</th><th>state</th>'
        "<th>started (UTC)</th><th>ended</th><th>duration</th><th>outputs</th><th>error</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return "".join(parts)
