"""What a finished run found, gathered into its :class:`~hydra_vertex.summary.Summary`, and shown:
the trials of the tuning job, where things landed on this machine, ``report.html``, the end-of-run
table.

Shared by ``hydra-vertex run --local`` and the Hydra sweeper (``hydra/sweeper=vertex``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hydra_vertex.search_space import SearchSpace
from hydra_vertex.summary import Summary
from hydra_vertex.trials import early_stopping_totals, short_reason

if TYPE_CHECKING:  # pragma: no cover
    from hydra_vertex.local_details import JobDetails

__all__ = [
    "best_so_far",
    "model_warning",
    "print_summary",
    "trials_of",
    "where_things_land",
    "write_report",
]


def trials_of(
    summary: Summary, job: Any, space: SearchSpace, details: JobDetails | None = None
) -> None:
    """The tuning job's name, trials (parameters typed as the app receives them) and image.

    ``details``: the emulator's own details of the job (devices, stopped early); by default read
    from the emulator named in the environment (nothing on Vertex)."""
    from hydra_vertex.local_details import from_environment
    from hydra_vertex.trials import trial_results, typed_parameters

    summary.tuning_job = str(job.name)
    if details is None:
        details = from_environment(summary.tuning_job)
    summary.trials = [
        replace(t, parameters=typed_parameters(space, t.parameters))
        for t in trial_results(job, details)
    ]
    with contextlib.suppress(IndexError, AttributeError):
        summary.image_uri = job.trial_job_spec.worker_pool_specs[0].container_spec.image_uri


def best_so_far(summary: Summary) -> None:
    """For a run that stopped before picking the winner: the best finished trial, if any."""
    from hydra_vertex.progress import best_of

    best = best_of(summary.trials, summary.direction == "minimize")
    if best is not None:
        summary.best_trial_id, summary.best_value = best.id, best.value
        summary.best_parameters = dict(best.parameters)


def where_things_land(summary: Summary, storage_root: Path, retrain_job: str | None) -> None:
    """The emulator's directories of this run (its storage at ``storage_root``): trial logs, each
    trial's and the retrain's Hydra output directory (``HYDRA_VERTEX_OUTPUT_DIR`` of each
    process), the model and whether the retrain wrote one."""
    runs = storage_root.parent / "runs"
    if summary.tuning_job:
        logs = runs / summary.tuning_job.rsplit("/", 1)[-1]
        summary.trial_logs = str(logs) if logs.is_dir() else None
        summary.trials = [
            replace(t, output_dir=str(logs / t.id / "outputs"))
            if (logs / t.id / "outputs").is_dir()
            else t
            for t in summary.trials
        ]
    if retrain_job:
        outputs = runs / retrain_job.rsplit("/", 1)[-1] / "outputs"
        summary.retrain_output_dir = str(outputs) if outputs.is_dir() else None
        metric_file = runs / retrain_job.rsplit("/", 1)[-1] / "metrics" / "output.metrics"
        summary.retrain_value = last_reported(metric_file, summary.metric)
    if summary.model_uri:
        from hydra_vertex.local_conventions import local_path

        model_dir = local_path(storage_root, summary.model_uri)
        summary.model_dir = str(model_dir) + os.sep
        summary.model_dir_empty = not (model_dir.is_dir() and any(model_dir.iterdir()))


def last_reported(path: Path, metric: str) -> float | None:
    """The last finite value of ``metric`` in a cloudml-hypertune metric file (one JSON object
    per line, values as strings), or None."""
    import json
    import math

    found: float | None = None
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            try:
                value = float(json.loads(line)[metric])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line, another tag
            if math.isfinite(value):
                found = value
    return found


def write_report(summary: Summary, directory: Path) -> str | None:
    """``report.html`` in ``directory``; a report that cannot be written never fails a run."""
    from hydra_vertex.report import write_report as write

    try:
        return str(write(summary, directory / "report.html").resolve())
    except Exception as e:  # the run's results matter more than their picture
        print(f"hydra-vertex: could not write the report: {e}", file=sys.stderr)
        return None


def print_summary(summary: Summary, stream: TextIO) -> None:
    """The end-of-run table: every trial, the winner, where the model went."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, highlight=False)
    table = Table(
        title=f"{summary.name}: {len(summary.trials)} trials ({summary.direction} {summary.metric})"
    )
    table.add_column("trial", justify="right")
    table.add_column("state")
    table.add_column(summary.metric, justify="right")
    table.add_column("parameters / reason", overflow="fold")
    for t in summary.trials:
        mark = " *" if t.id == summary.best_trial_id else ""
        value = "" if t.value is None else f"{t.value:.6g}"
        detail = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.parameters.items()
        )
        if t.infeasible_reason:
            detail = t.reason or short_reason(t.infeasible_reason)
        style = "green" if mark else ("red" if t.state == "INFEASIBLE" else None)
        state = f"{t.state} (stopped early)" if t.stopped_early else t.state
        table.add_row(f"{t.id}{mark}", state, value, detail, style=style)
    console.print(table)
    totals = early_stopping_totals(summary.trials)
    if totals["stopped_trials"]:
        console.print(
            f"stopped early: {totals['stopped_trials']} trials, saving about "
            f"{totals['saved_steps']} steps and {totals['saved_seconds']:.1f}s of trial time"
        )
    if summary.best_trial_id is not None and summary.best_value is not None:
        console.print(
            f"best trial {summary.best_trial_id}: {summary.metric}={summary.best_value:.6g}"
        )
    if summary.best_overrides:
        console.print("best overrides: " + " ".join(summary.best_overrides), soft_wrap=True)
    if summary.retrain_value is not None:
        console.print(f"retrain: {summary.metric}={summary.retrain_value:.6g}")
    if summary.model_dir:
        empty = " (empty)" if summary.model_dir_empty else ""
        console.print(f"model: {summary.model_dir}{empty}", soft_wrap=True)
    if summary.retrain_output_dir:
        console.print(f"retrain output: {summary.retrain_output_dir}", soft_wrap=True)
    if summary.trial_logs:
        console.print(
            f"trials: {summary.trial_logs}/<trial>/ (stdout.log, stderr.log; outputs/: Hydra's "
            "output directory)",
            soft_wrap=True,
        )
    if summary.report:
        console.print(f"report: {summary.report}", soft_wrap=True)
    log = f"; log: {summary.log}" if summary.log else ""
    console.print(f"took {summary.elapsed_seconds:.1f}s{log}", soft_wrap=True)
    if summary.model_dir_empty:
        console.print(model_warning(summary), style="yellow", soft_wrap=True)


def model_warning(summary: Summary) -> str:
    return (
        f"hydra-vertex: warning: the retrain wrote nothing under AIP_MODEL_DIR "
        f"({summary.model_dir}); save the model to os.environ['AIP_MODEL_DIR'] (on Vertex AI only "
        f"that directory outlives the job)"
    )
