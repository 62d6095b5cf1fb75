"""``hydra-vertex run --local JOB.yaml``: the whole pipeline on one machine.

1. Read and check the job file and its search space (errors name the field); a ``hydra.sweeper``
   block's ``n_trials``/``n_jobs`` fill what the job file leaves unset, and its ignored keys get a
   warning line each.
2. Build the local image: the source snapshot and its Python environment (progress shown while an
   environment is built; :mod:`hydra_vertex.images`).
3. Pre-flight: compose the app's config in the image for every branch of the space
   (:mod:`hydra_vertex.preflight`); a key the config lacks stops the run here, in seconds.
4. Use the emulator named by ``HYDRA_VERTEX_EMULATOR``, or the one whose ``endpoint.json`` is in
   the state directory, or start one in this process.
5. Run the compiled template (``pipelines/tune_and_retrain.json``) with ``kfp.local`` (each
   component in a subprocess of this Python), given the image built in 2; the pipeline's own output
   goes to a log file.
6. Meanwhile, show progress read from the emulator; at the end, write ``SUMMARY.json``, also when
   a step failed (what finished stays in it), with each trial's and the retrain's Hydra output
   directory and whether the retrain wrote a model.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from hydra_vertex import images, jobfile, preflight
from hydra_vertex.local_emulator import DEFAULT_STATE_DIR, EmulatorInfo, emulator, pointed_at
from hydra_vertex.progress import Display, Snapshot, Watcher, best_of
from hydra_vertex.reasons import strip_ansi
from hydra_vertex.results import (  # noqa: F401 (the CLI imports the table from here)
    model_warning,
    print_summary,
    where_things_land,
    write_report,
)
from hydra_vertex.search_space import SearchSpace
from hydra_vertex.summary import Summary

RUNS_DIR = Path(".hydra-vertex") / "runs"


def pipeline_parameters(spec: jobfile.JobSpec, space_data: Any) -> dict[str, Any]:
    """The template's parameter values for a job file (local source directory)."""
    return {
        "app_name": spec.name,
        "app_source": str(spec.source),
        "app_command": list(spec.command),
        "search_space": space_data,
        "project": spec.vertex.project,
        "location": spec.vertex.region,
        "staging_bucket": spec.vertex.staging_bucket,
        "max_trial_count": spec.tuning.max_trials,
        "parallel_trial_count": spec.tuning.parallel_trials,
        "max_failed_trial_count": spec.tuning.max_failed_trials,
        "machine_type": spec.vertex.machine_type,
        "service_account": spec.vertex.service_account or "",
        "retrain_overrides": list(spec.retrain_overrides),
        "wandb": dict(spec.wandb),
        "seed": -1 if spec.tuning.seed is None else spec.tuning.seed,
        "trial_timeout_seconds": spec.tuning.timeout_seconds or 0,
        "trial_machine": spec.vertex.machine.to_dict(),
        "retrain_machine": spec.retrain_machine.to_dict() if spec.retrain_vertex else {},
        "job_settings": spec.vertex.job.to_dict(),
        "tuning_options": spec.tuning.options.to_dict(),
    }


def load_space(spec: jobfile.JobSpec) -> tuple[jobfile.JobSpec, SearchSpace, list[str]]:
    """The search space, parsed with the job file's tuning options applied (checked here, before
    anything runs); the job with a Hydra config's ``n_trials``/``n_jobs``/``max_failure_rate``
    where it sets no budget; the notes to print (one line per sweeper key ignored or used)."""
    import yaml

    from hydra_vertex.errors import SearchSpaceError, SettingError
    from hydra_vertex.search_space import from_mapping, sweeper_settings

    try:
        data = yaml.safe_load(spec.search_space.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SearchSpaceError(f"{spec.search_space}: not valid YAML: {e}") from None
    space = from_mapping(data, source=str(spec.search_space))
    settings = sweeper_settings(data, source=str(spec.search_space))
    spec, used = jobfile.apply_sweeper(spec, settings)
    try:
        space = spec.tuning.options.apply(space)
    except SettingError as e:
        raise jobfile.setting_error(spec.path, "tuning", e) from None
    return spec, space, [*settings.notes, *used]


def load_space_data(spec: jobfile.JobSpec) -> tuple[dict[str, Any], SearchSpace]:
    """The search space as the pipeline takes it (a search-space file's mapping, rebuilt from the
    parsed space: no ``null`` reaches kfp), and parsed."""
    _, space, _ = load_space(spec)
    return space.to_mapping(), space


class _Jobs:
    """Reads this run's jobs from the emulator (by display name, created after the start)."""

    def __init__(self, spec: jobfile.JobSpec, since: datetime) -> None:
        from hydra_vertex.steps.common import job_client, parent

        self.client = job_client(spec.vertex.region)
        self.parent = parent(spec.vertex.project, spec.vertex.region)
        self.name = spec.name
        self.since = since - timedelta(seconds=2)

    def _newest(self, collection: str, display_name: str) -> Any | None:
        method = getattr(self.client, f"list_{collection}")
        pager = method(request={"parent": self.parent, "filter": f'display_name="{display_name}"'})
        for job in pager:  # newest first
            if job.display_name == display_name and job.create_time >= self.since:
                return job
            break
        return None

    def tuning(self) -> Any | None:
        return self._newest("hyperparameter_tuning_jobs", f"{self.name}-tuning")

    def retrain(self) -> Any | None:
        return self._newest("custom_jobs", f"{self.name}-retrain")


def _snapshot(jobs: _Jobs, spec: jobfile.JobSpec, minimize: bool, started: float) -> Snapshot:
    from hydra_vertex.jobs import state_name
    from hydra_vertex.local_details import from_environment
    from hydra_vertex.trials import trial_results

    snap = Snapshot(max_trials=spec.tuning.max_trials, started=started)
    job = jobs.tuning()
    if job is None:
        snap.stage = "building image"
        return snap
    details = from_environment(job.name)
    snap.trials = trial_results(job, details)
    snap.warnings = list(details.warnings)
    snap.best = best_of(snap.trials, minimize)
    state = state_name(job)
    if state in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
        snap.stage = "tuning"
    elif state != "JOB_STATE_SUCCEEDED":
        snap.stage = f"tuning {state.removeprefix('JOB_STATE_').lower()}"
    elif (retrain := jobs.retrain()) is None:
        snap.stage = "picking the best trial"
    else:
        snap.stage = "retraining"
        snap.warnings += list(from_environment(retrain.name).warnings)
    return snap


_OUR_ERROR_RE = re.compile(r"^hydra_vertex\.errors\.\w+: (.*)$")
# An error answer of the API (the emulator's 400 naming a field): the message after the code and
# the request line ("400 POST http://...: <message>").
_API_ERROR_RE = re.compile(r"^google\.api_core\.exceptions\.\w+: (?:\d{3} )?(?:[A-Z]+ \S+: )?(.*)$")
_ANY_ERROR_RE = re.compile(r"^\w*(?:Error|Exception): (.*)$")


def pipeline_error(log_text: str) -> str | None:
    """The message of the last exception a component raised, from the pipeline's log.

    Our own errors (``hydra_vertex.errors.*``, with their continuation lines) are preferred over
    the API's error answers, and those over whatever else failed.
    """
    lines = [line.strip() for line in strip_ansi(log_text).splitlines()]
    for pattern in (_OUR_ERROR_RE, _API_ERROR_RE, _ANY_ERROR_RE):
        for i in range(len(lines) - 1, -1, -1):
            m = pattern.match(lines[i])
            if not m:
                continue
            out = [m.group(1)]
            for extra in lines[i + 1 :]:
                if not extra or extra.startswith(("[KFP", "Traceback")):
                    break
                out.append(extra)
            return "\n".join(out)
    return None


def run_local(
    job_file: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    progress: str = "auto",
    stream: TextIO | None = None,
) -> Summary:
    """Build, tune, pick the best trial and retrain on this machine; returns the summary.

    ``progress``: ``auto`` (live on a terminal, lines otherwise), ``live``, ``lines``, ``quiet``.
    The summary's ``status`` is ``failed`` (with ``error``) when a step failed.
    """
    out = stream or sys.stdout
    spec, space, notes = load_space(jobfile.load(job_file))
    mode = progress
    if mode == "auto":
        mode = "live" if out.isatty() else "lines"
    if mode != "quiet":
        for note in notes:
            print(f"hydra-vertex: {note}", file=sys.stderr, flush=True)
    image = build_image(spec, mode, out)
    if preflight.enabled():
        run_preflight(spec, space, image, mode, out)
    summary = Summary(
        name=spec.name,
        metric=space.metric,
        direction=space.direction,
        retrain_overrides=list(spec.retrain_overrides),
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = (RUNS_DIR / f"{spec.name}-{stamp}-{os.getpid()}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "pipeline.log"
    summary.log = str(log_path)

    started = time.monotonic()
    since = datetime.now(UTC)
    outputs: dict[str, Any] = {}
    state = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
    with emulator(state, spec.tuning.seed) as emu, pointed_at(emu):
        jobs = _Jobs(spec, since)
        minimize = space.direction == "minimize"
        with Display(mode, space.metric, out) as display:
            watcher = Watcher(lambda: _snapshot(jobs, spec, minimize, started), display)
            watcher.start()
            try:
                outputs = _run_pipeline(spec, space, image.ref, run_dir, log_path)
                summary.status = "succeeded"
            except _PipelineFailed as e:
                summary.status = "failed"
                summary.error = e.message
            finally:
                watcher.stop()
        _collect(summary, jobs, outputs, emu, space)
    summary.elapsed_seconds = round(time.monotonic() - started, 2)
    summary.report = write_report(summary, Path(output).parent if output else run_dir)
    if output is not None:
        summary.write(output)
    return summary


class _PipelineFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def build_image(spec: jobfile.JobSpec, mode: str, out: TextIO) -> images.LocalImage:
    """The job's local image (snapshot + environment), with progress while an environment is
    built: a live status line on a terminal, plain lines otherwise, nothing when quiet."""
    kwargs: dict[str, Any] = {"python": spec.python, "requirements": spec.requirements}
    if mode == "live":
        from rich.console import Console
        from rich.text import Text

        console = Console(file=out, highlight=False)
        with console.status("building the local image ...") as status:

            def update(line: str) -> None:
                status.update(Text(f"building the image's environment: {line[:100]}"))

            image = images.build_local(spec.source, spec.name, log=update, **kwargs)
    elif mode == "lines":
        image = images.build_local(
            spec.source, spec.name, log=lambda line: print(f"image: {line}", file=out, flush=True),
            **kwargs,
        )
    else:
        image = images.build_local(spec.source, spec.name, **kwargs)
    if mode != "quiet":
        python = image.environment.python or f"hydra-vertex's own ({sys.executable})"
        state = "cached" if image.cached else "built"
        print(f"image {image.ref} ({state}; python: {python})", file=out, flush=True)
    return image


def run_preflight(
    spec: jobfile.JobSpec, space: SearchSpace, image: images.LocalImage, mode: str, out: TextIO
) -> None:
    """Compose the app's config in the image for every branch of the space, before any trial."""
    count, seconds = preflight.check(space, spec.command, images.runtime(image.workdir))
    if mode != "quiet":
        print(
            f"pre-flight: the app's config composes for {count} branch(es) of the space "
            f"({seconds:.1f}s)",
            file=out,
            flush=True,
        )


def _run_pipeline(
    spec: jobfile.JobSpec, space: SearchSpace, image_ref: str, run_dir: Path, log_path: Path
) -> dict[str, Any]:
    from kfp import local
    from kfp.components import load_component_from_file

    from hydra_vertex.pipelines.tune_and_retrain import TEMPLATE

    pipeline = load_component_from_file(str(TEMPLATE))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(run_dir / "root"))
    with (
        open(log_path, "w", buffering=1) as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        parameters = pipeline_parameters(spec, space.to_mapping())
        parameters["app_source"] = image_ref  # built above, with the job's environment settings
        try:
            task = pipeline(**parameters)
        except Exception as e:  # kfp.local raises RuntimeError naming the failed task
            log.flush()
            detail = pipeline_error(log_path.read_text(errors="replace"))
            raise _PipelineFailed(
                (detail or strip_ansi(str(e))) + f"\n(the pipeline's log: {log_path})"
            ) from None
    return dict(task.outputs)


def _collect(
    summary: Summary, jobs: _Jobs, outputs: dict[str, Any], emu: EmulatorInfo, space: SearchSpace
) -> None:
    """Fill the summary from the pipeline's outputs and, for what they lack, from the jobs."""
    from hydra_vertex.local_details import job_details
    from hydra_vertex.results import best_so_far, trials_of

    with contextlib.suppress(Exception):
        job = jobs.tuning()
        if job is not None:
            trials_of(summary, job, space, job_details(emu.endpoint, emu.token, job.name))
    if outputs:
        summary.best_trial_id = str(outputs["best_trial_id"])
        summary.best_value = float(outputs["best_value"])
        summary.best_overrides = [str(o) for o in outputs["best_overrides"]]
        summary.model_uri = str(outputs["model_dir"])
        summary.retrain_job = str(outputs["retrain_job"])
        summary.tuning_job = str(outputs["tuning_job"])
        summary.image_uri = str(outputs["image_uri"])
        for t in summary.trials:
            if t.id == summary.best_trial_id:
                summary.best_parameters = dict(t.parameters)
    elif summary.trials:  # a failed run: still say what the best finished trial was
        best_so_far(summary)
    if emu.storage_root is not None:
        retrain = summary.retrain_job
        if retrain is None:
            with contextlib.suppress(Exception):
                job = jobs.retrain()
                retrain = job.name if job is not None else None
        where_things_land(summary, emu.storage_root.resolve(), retrain)
    elif summary.model_uri:
        summary.model_dir = summary.model_uri
