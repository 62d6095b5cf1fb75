"""`hydra-vertex status [JOB]`, `cancel JOB`, `logs JOB [--trial N] [--follow]`, `open [JOB]`:
running studies from the command line, against Vertex AI or the emulator alike
(:mod:`hydra_vertex.jobref` says which, and which job; docs/cli.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from hydra_vertex.errors import UsageError

JOB_HELP = (
    "a resource name (projects/P/locations/L/hyperparameterTuningJobs/ID), an id, or a display "
    "name (the app NAME's tuning job is NAME-tuning, its retrain NAME-retrain)"
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", help="a Vertex AI project (default: the emulator, see docs/cli.md)")
    p.add_argument("--region", help="its region (default: us-central1)")
    p.add_argument(
        "--state-dir",
        default=None,
        help="the local emulator's state directory (default: .hydra-vertex/emulator)",
    )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="tuning jobs, pipeline runs and custom jobs: state, trials, best so far, elapsed",
        description="Without JOB: every tuning job, pipeline run and custom job, newest first. "
        "With JOB: that one in detail (a tuning job's trials, a pipeline run's tasks).",
    )
    p.add_argument("job", nargs="?", metavar="JOB", help=JOB_HELP)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--limit", type=int, default=20, help="without JOB: at most N of each kind")
    _common(p)
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "cancel",
        help="cancel a tuning job, custom job or pipeline run and wait until it is CANCELLED",
    )
    p.add_argument("job", metavar="JOB", help=JOB_HELP)
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for CANCELLED (default 300)"
    )
    _common(p)
    p.set_defaults(func=_cancel)

    p = sub.add_parser(
        "logs",
        help="a trial's or a job's output (Cloud Logging on Vertex AI; the emulator locally)",
        description="Print the stdout and stderr of a tuning trial (--trial N; without it, every "
        "trial's, each line prefixed with its trial) or of a custom job such as the retrain. "
        "--follow keeps printing until the trial or the job ends.",
    )
    p.add_argument("job", metavar="JOB", help=JOB_HELP)
    p.add_argument("--trial", metavar="N", help="the trial's id (a tuning job)")
    p.add_argument("--follow", "-f", action="store_true", help="wait for more until it ends")
    _common(p)
    p.set_defaults(func=_logs)

    p = sub.add_parser(
        "open",
        help="print the console URL of a job (the emulator's console, or Google Cloud console)",
    )
    p.add_argument("job", nargs="?", metavar="JOB", help=JOB_HELP)
    _common(p)
    p.set_defaults(func=_open)


def _setup(args: argparse.Namespace) -> tuple[Any, Any]:
    from hydra_vertex import jobref

    t = jobref.target(
        getattr(args, "job", None), project=args.project, region=args.region,
        state_dir=args.state_dir,
    )
    return t, jobref.clients(t)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


# -- status --------------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from hydra_vertex import jobref
    from hydra_vertex.lifecycle import job_status

    t, c = _setup(args)
    if args.job:
        status = job_status(jobref.resolve(c, t, args.job), detail=True)
        if args.format == "json":
            print(json.dumps(status.to_dict(), indent=2))
        else:
            _print_detail(status)
        return 0
    rows = []
    for kind in (jobref.TUNING, jobref.PIPELINE, jobref.CUSTOM):
        for i, found in enumerate(jobref.listed(c, t, kind)):
            if i >= args.limit:
                break
            rows.append(job_status(found))
    rows.sort(key=lambda s: s.create_time or "", reverse=True)
    if args.format == "json":
        print(json.dumps([s.to_dict() for s in rows], indent=2))
        return 0
    if not rows:
        print(f"no jobs on {t.describe()}")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"jobs on {t.describe()}", title_justify="left")
    for column in ("kind", "name", "state", "trials", "best so far", "elapsed", "id"):
        table.add_column(column, overflow="fold")
    for s in rows:
        trials = best = ""
        if s.kind == "tuning":
            trials = (
                f"{s.trials_done} done, {s.trials_failed} failed, {s.trials_running} running "
                f"/ {s.max_trials}"
            )
            if s.best_value is not None:
                best = f"{s.metric}={s.best_value:.6g} (trial {s.best_trial_id})"
        table.add_row(
            s.kind, s.display_name, s.state, trials, best, _fmt_seconds(s.elapsed_seconds), s.id
        )
    Console(highlight=False).print(table)
    return 0


def _print_detail(s: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    running = " (running)" if s.running else ""
    console.print(f"{s.kind} {s.display_name}: {s.state}{running}", soft_wrap=True)
    console.print(f"  {s.name}", soft_wrap=True)
    console.print(
        f"  created {s.create_time or '-'}, started {s.start_time or '-'}, "
        f"ended {s.end_time or '-'}; elapsed {_fmt_seconds(s.elapsed_seconds) or '-'}",
        soft_wrap=True,
    )
    if s.error:
        console.print(f"  error: {s.error}", soft_wrap=True, markup=False)
    if s.kind == "tuning":
        console.print(
            f"  {s.direction} {s.metric}: {s.trials_done} succeeded, {s.trials_failed} failed, "
            f"{s.trials_running} running of {s.max_trials}",
            soft_wrap=True,
        )
        if s.best_value is not None:
            params = " ".join(f"{k}={_fmt_value(v)}" for k, v in s.best_parameters.items())
            console.print(
                f"  best so far: trial {s.best_trial_id}, {s.metric}={s.best_value:.6g}: {params}",
                soft_wrap=True, markup=False,
            )
        if s.trials:
            table = Table(box=None, pad_edge=False)
            for column in ("trial", "state", s.metric, "elapsed", "parameters / reason"):
                table.add_column(column, overflow="fold")
            for trial in s.trials:
                mark = " *" if trial.id == s.best_trial_id else ""
                detail = trial.reason or " ".join(
                    f"{k}={_fmt_value(v)}" for k, v in trial.parameters.items()
                )
                table.add_row(
                    f"{trial.id}{mark}", trial.state, _fmt_value(trial.value),
                    _fmt_seconds(trial.elapsed_seconds), detail,
                )
            console.print(table)
    if s.tasks:
        table = Table(box=None, pad_edge=False)
        for column in ("task", "state", "started", "ended", "outputs"):
            table.add_column(column, overflow="fold")
        for task in s.tasks:
            outputs = " ".join(
                f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                for k, v in task.outputs.items()
            )
            table.add_row(task.name, task.state, task.start_time or "", task.end_time or "",
                          outputs)
        console.print(table)
    for name in s.created_jobs:
        console.print(f"  created {name}", soft_wrap=True)


# -- cancel --------------------------------------------------------------------------------------


def _cancel(args: argparse.Namespace) -> int:
    from hydra_vertex import jobref
    from hydra_vertex.errors import HydraVertexError
    from hydra_vertex.lifecycle import cancel, short_state, state_of

    if args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {args.timeout}")
    t, c = _setup(args)
    found = jobref.resolve(c, t, args.job)
    started = time.monotonic()
    print(f"cancelling {found.kind.label} {found.title} ({found.name}) ...", flush=True)
    done = cancel(c, t, found, timeout=args.timeout)
    state = state_of(done.job.job)
    stopped = ", ".join(done.stopped) if done.stopped else "nothing was running"
    if done.timed_out:
        raise HydraVertexError(
            f"{found.title} is still {short_state(state).upper()} after {args.timeout:.0f} s; "
            f"it was asked to stop ({stopped}); 'hydra-vertex status {found.id}' shows it"
        )
    print(
        f"{found.title}: {short_state(state).upper()} after {time.monotonic() - started:.1f} s; "
        f"stopped: {stopped}"
    )
    for job in done.created:
        print(f"  its {job.kind.label} {job.title} ({job.name}): "
              f"{short_state(state_of(job.job)).upper()}")
    return 0 if state.endswith("CANCELLED") else 1


# -- logs ----------------------------------------------------------------------------------------


def _logs(args: argparse.Namespace) -> int:
    from hydra_vertex import cloud_logs, jobref
    from hydra_vertex.lifecycle import TERMINAL, created_jobs, state_of
    from hydra_vertex.vertex import logging_client

    t, c = _setup(args)
    found = jobref.resolve(c, t, args.job)
    trial = None if args.trial is None else str(args.trial).strip()
    if found.kind is jobref.PIPELINE:
        jobs = created_jobs(c, t, found)
        named = "; ".join(f"{j.kind.label} {j.title} ({j.id})" for j in jobs) or "none yet"
        raise UsageError(
            f"{found.title} is a pipeline run; its logs are those of the jobs it created "
            f"({named}): 'hydra-vertex logs JOB [--trial N]' with one of them"
        )
    if trial is not None and found.kind is not jobref.TUNING:
        raise UsageError(
            f"--trial {trial}: {found.title} is a {found.kind.label}, not a tuning job"
        )
    if trial is not None:
        ids = [str(x.id) for x in found.job.trials]
        if trial not in ids:
            raise UsageError(
                f"--trial {trial}: {found.title} has no such trial (its trials: "
                f"{', '.join(ids) or 'none yet'})"
            )
    project = found.name.split("/")[1]
    client = logging_client(project, t.endpoint)
    base = cloud_logs.job_filter(found.id, trial, found.job.create_time)
    prefix = found.kind is jobref.TUNING and trial is None
    strip = not sys.stdout.isatty()

    def emit(line: cloud_logs.Line) -> None:
        text = line.text
        if strip:
            from hydra_vertex.reasons import strip_ansi

            text = strip_ansi(text)
        lead = f"[trial {line.trial}] " if prefix and line.trial else ""
        print(f"{lead}{text}", flush=True)

    if not args.follow:
        lines = cloud_logs.read(client, project, base)
        for line in lines:
            emit(line)
        if not lines:
            print(f"hydra-vertex: no log entries for {found.title}"
                  f"{f' trial {trial}' if trial else ''} (yet)", file=sys.stderr)
        return 0

    def fetch(since: Any) -> list[cloud_logs.Line]:
        flt = base if since is None else f'{base} AND timestamp>="{cloud_logs.rfc3339(since)}"'
        return cloud_logs.read(client, project, flt)

    def ended() -> bool:
        job = found.kind.call(c, "get", name=found.name)
        if state_of(job) in TERMINAL or trial is None:
            return state_of(job) in TERMINAL
        return any(
            str(x.id) == trial and x.state.name in ("SUCCEEDED", "INFEASIBLE") for x in job.trials
        )

    for line in cloud_logs.follow(fetch, ended, interval=1.0 if t.is_emulator else 5.0):
        emit(line)
    return 0


# -- open ----------------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> int:
    from hydra_vertex import jobref
    from hydra_vertex.lifecycle import console_url

    t, c = _setup(args)
    found = jobref.resolve(c, t, args.job) if args.job else None
    print(console_url(t, found))
    return 0
