"""``hydra-vertex run --local JOB.yaml``: the whole pipeline on one machine.

1. Read and check the job file and its search space (errors name the field); a ``hydra.sweeper``
   block's ``n_trials``/``n_jobs`` fill what the job file leaves unset, and its ignored keys get a
   warning line each.
2. Take a lease on the emulator: the one ``HYDRA_VERTEX_EMULATOR`` names, or the one whose
   ``endpoint.json`` is in the state directory, or one started for this run in a process of its
   own (:mod:`hydra_vertex.local_emulator`), which starts while 3 and 4 run and stops when no run
   holds a lease any more.
3. Build the local image: the source snapshot and its Python environment (progress shown while an
   environment is built; :mod:`hydra_vertex.images`).
4. Pre-flight: compose the app's config in the image for every branch of the space
   (:mod:`hydra_vertex.preflight`); a key the config lacks stops the run here, in seconds.
5. Create the compiled template (``pipelines/tune_and_retrain.json``) as a ``PipelineJob`` on the
   emulator, with the parameters ``hydra-vertex submit`` gives it on Vertex AI
   (:mod:`hydra_vertex.pipelines.job_request`) and the image built in 3, and follow it through the
   API (:mod:`hydra_vertex.pipeline_runs`): the emulator runs it as it runs any pipeline job.
   Progress comes from the job's task details and the tuning job its ``launch-tuning`` task
   created; a failure's reason is the failed task's error (its deciding line first).
6. Ctrl-C or SIGTERM cancels the pipeline job (which cancels the tuning job or the retrain it
   launched), waits until it is CANCELLED, and exits 130 / 143.
7. At the end, write ``SUMMARY.json`` from the pipeline job's outputs and its own tuning job, also
   when a step failed (what finished stays in it), with each trial's and the retrain's Hydra output
   directory and whether the retrain wrote a model.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from hydra_vertex import images, jobfile, preflight
from hydra_vertex.local_details import JobDetails
from hydra_vertex.local_emulator import DEFAULT_STATE_DIR, EmulatorInfo, lease, pointed_at
from hydra_vertex.progress import Display, Snapshot, best_of
from hydra_vertex.results import (  # noqa: F401 (the CLI imports the table from here)
    model_warning,
    print_summary,
    where_things_land,
    write_report,
)
from hydra_vertex.search_space import SearchSpace
from hydra_vertex.summary import Summary

RUNS_DIR = Path(".hydra-vertex") / "runs"  # a run's report when no --output is given
CANCEL_TIMEOUT_SECONDS = 300.0
_STAGES = {
    "build-image": "building image",
    "launch-tuning": "tuning",
    "best-trial": "picking the best trial",
    "retrain": "retraining",
}
_ENDED = {
    "PIPELINE_STATE_SUCCEEDED": "done",
    "PIPELINE_STATE_FAILED": "failed",
    "PIPELINE_STATE_CANCELLED": "cancelled",
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
    The summary's ``status`` is ``failed`` (with ``error``) when a step failed. Ctrl-C (SIGINT) or
    SIGTERM cancels the run's pipeline job and waits until it has ended, writes the summary
    (``status`` ``cancelled``), then raises ``KeyboardInterrupt`` (SIGINT) or ``SystemExit(143)``.
    """
    out = stream or sys.stdout
    _import_in_background("google.cloud.aiplatform_v1")  # the client, while the rest gets ready
    spec, space, notes = load_space(jobfile.load(job_file))
    mode = progress
    if mode == "auto":
        mode = "live" if out.isatty() else "lines"
    if mode != "quiet":
        for note in notes:
            print(f"hydra-vertex: {note}", file=sys.stderr, flush=True)
    summary = Summary(
        name=spec.name,
        metric=space.metric,
        direction=space.direction,
        retrain_overrides=list(spec.retrain_overrides),
    )
    started = time.monotonic()
    state = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
    signalled: int | None = None
    with lease(state, spec.tuning.seed) as held:  # an emulator started here starts meanwhile
        image = build_image(spec, mode, out)
        if preflight.enabled():
            run_preflight(spec, space, image, mode, out)
        emu = held.use()
        with pointed_at(emu):
            run = _Run(spec, space, emu, mode, out, started)
            signalled = run.run(image.ref)
            run.collect(summary)
    summary.elapsed_seconds = round(time.monotonic() - started, 2)
    report_dir = Path(output).parent if output else _report_dir(spec.name)
    summary.report = write_report(summary, report_dir)
    if output is not None:
        summary.write(output)
    if signalled == signal.SIGINT:
        raise KeyboardInterrupt
    if signalled is not None:
        raise SystemExit(128 + signalled)
    return summary


def _report_dir(name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = (RUNS_DIR / f"{name}-{stamp}-{os.getpid()}").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _import_in_background(module: str) -> None:
    import importlib

    threading.Thread(target=importlib.import_module, args=(module,), daemon=True).start()


class _Signalled(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM raise :class:`_Signalled` (in the main thread only)."""

    def handler(signum: int, frame: Any) -> None:
        raise _Signalled(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class _Run:
    """One pipeline job of the template on the emulator, followed to its end."""

    spec: jobfile.JobSpec
    space: SearchSpace
    emu: EmulatorInfo
    mode: str
    out: TextIO
    started: float
    name: str = ""
    job: Any = None
    signalled: int | None = None
    _tuning: Any = field(default=None, repr=False)
    _jobs: Any = field(default=None, repr=False)

    @property
    def jobs(self) -> Any:
        """The v1 ``JobServiceClient`` (one, made when first needed)."""
        if self._jobs is None:
            from hydra_vertex.vertex import job_client

            self._jobs = job_client(self.spec.vertex.region)
        return self._jobs

    @property
    def parent(self) -> str:
        return f"projects/{self.spec.vertex.project}/locations/{self.spec.vertex.region}"

    def run(self, image_ref: str) -> int | None:
        """Create the pipeline job and follow it to its end; on SIGINT/SIGTERM cancel it and wait
        for that. Returns the signal, if one came."""
        from hydra_vertex import pipeline_runs
        from hydra_vertex.pipelines.job_request import request
        from hydra_vertex.polling import for_endpoint
        from hydra_vertex.vertex import pipeline_client

        client = pipeline_client(self.spec.vertex.region)
        body = request(self.spec, self.space.to_mapping(), image_ref).pipeline_job()
        job_id = _job_id(self.spec.name)
        self.name = f"{self.parent}/pipelineJobs/{job_id}"
        pace = for_endpoint()
        try:
            with _signals(), Display(self.mode, self.space.metric, self.out) as display:
                pipeline_runs.create(client, self.parent, body, job_id)
                self.job = pipeline_runs.follow(
                    client, self.name, pace=pace, on_poll=lambda job: self._show(job, display)
                )
        except _Signalled as e:
            self.signalled = e.signum
            self.job = self._cancel(client, e.signum)
        return self.signalled

    def _cancel(self, client: Any, signum: int) -> Any:
        from hydra_vertex import pipeline_runs
        from hydra_vertex.polling import for_endpoint

        why = signal.Signals(signum).name
        _say(f"{why}: cancelling pipeline job {self.name} (and the job it launched) ...")
        try:
            with _signals():
                job = pipeline_runs.cancel(
                    client, self.name, pace=for_endpoint(), timeout=CANCEL_TIMEOUT_SECONDS
                )
        except _Signalled:
            _say(f"not waiting any longer: pipeline job {self.name} is being cancelled")
            return None
        except Exception as e:  # a job never created (the signal came first) is not found
            _say(f"could not cancel pipeline job {self.name}: {e}")
            return None
        state = pipeline_runs.state(job)
        _say(f"pipeline job {self.name} {state.removeprefix('PIPELINE_STATE_')}")
        return job

    def _show(self, job: Any, display: Display) -> Hashable:
        """Show the run's progress; returns what counts as progress for the poll pace: the
        tasks' states and, while the retrain runs, its job's (the run ends right after it, and
        polls quicken when it does)."""
        from hydra_vertex import pipeline_runs

        running = pipeline_runs.running_task(job)
        marks = (pipeline_runs.task_states(job), self._retrain_state(job, running))
        if self.mode == "quiet":
            return marks
        snap = Snapshot(max_trials=self.spec.tuning.max_trials, started=self.started)
        ended = _ENDED.get(pipeline_runs.state(job))
        snap.stage = ended or _STAGES.get(running or "", "starting")
        tuning = self._tuning_job(job)
        if tuning is not None:
            from hydra_vertex.trials import trial_results

            details = self._details(tuning.name)
            snap.trials = trial_results(tuning, details)
            snap.warnings = list(details.warnings)
            snap.best = best_of(snap.trials, self.space.direction == "minimize")
        if running == "retrain":
            from hydra_vertex import pipeline_runs as runs

            retrain = runs.launched(job, "retrain", "CustomJob")
            if retrain is not None:
                snap.warnings += list(self._details(retrain).warnings)
        display.update(snap)
        return marks

    def _details(self, job_name: str) -> JobDetails:
        """The emulator's own details of a job (devices, early stops, warnings)."""
        from hydra_vertex.local_details import job_details

        return job_details(self.emu.endpoint, self.emu.token, job_name)

    def _retrain_state(self, job: Any, running: str | None) -> str:
        from hydra_vertex import pipeline_runs
        from hydra_vertex.jobs import state_name

        name = pipeline_runs.launched(job, "retrain", "CustomJob") if running == "retrain" else None
        if name is None:
            return ""
        with contextlib.suppress(Exception):  # only the pace depends on it
            return state_name(self.jobs.get_custom_job(name=name))
        return ""

    def _tuning_job(self, job: Any) -> Any | None:
        """The tuning job the run's launch-tuning task created, as it is now (None before)."""
        from hydra_vertex import pipeline_runs
        from hydra_vertex.jobs import TERMINAL, state_name

        if self._tuning is not None and state_name(self._tuning) in TERMINAL:
            return self._tuning
        name = pipeline_runs.launched(job, "launch-tuning", "HyperparameterTuningJob")
        if name is None:
            return None
        with contextlib.suppress(Exception):  # progress never breaks the run
            self._tuning = self.jobs.get_hyperparameter_tuning_job(name=name)
        return self._tuning

    def collect(self, summary: Summary) -> None:
        """The summary from the pipeline job (its outputs, the failed task's error) and the
        tuning job it created: only this run's trials, whoever else uses the emulator."""
        from hydra_vertex import pipeline_runs
        from hydra_vertex.results import best_so_far, trials_of

        job = self.job
        if self.emu.storage_root is not None and self.name:
            summary.log = str(pipeline_runs.local_log(self.emu.storage_root.parent, self.name))
        if job is None:
            summary.status, summary.error = "cancelled", f"interrupted: {self.name} not waited for"
            return
        state = pipeline_runs.state(job)
        outs = pipeline_runs.outputs(job) if state == "PIPELINE_STATE_SUCCEEDED" else {}
        tuning = outs.get("tuning_job") or pipeline_runs.launched(
            job, "launch-tuning", "HyperparameterTuningJob"
        )
        retrain = outs.get("retrain_job") or pipeline_runs.launched(job, "retrain", "CustomJob")
        if tuning:
            with contextlib.suppress(Exception):
                trials_of(
                    summary,
                    self.jobs.get_hyperparameter_tuning_job(name=str(tuning)),
                    self.space,
                    self._details(str(tuning)),
                )
        if state == "PIPELINE_STATE_SUCCEEDED":
            summary.status = "succeeded"
            summary.best_trial_id = str(outs["best_trial_id"])
            summary.best_value = float(outs["best_value"])
            summary.best_overrides = [str(o) for o in outs["best_overrides"]]
            summary.model_uri = str(outs["model_dir"])
            summary.image_uri = str(outs["image_uri"])
            for t in summary.trials:
                if t.id == summary.best_trial_id:
                    summary.best_parameters = dict(t.parameters)
        else:
            summary.status = "cancelled" if self.signalled is not None else "failed"
            why = pipeline_runs.failure(job) if self.signalled is None else None
            summary.error = why or f"pipeline job {self.name} ended {state}"
            if summary.trials:  # still say what the best finished trial was
                best_so_far(summary)
        summary.retrain_job = str(retrain) if retrain else None
        if self.emu.storage_root is not None:
            where_things_land(summary, self.emu.storage_root.resolve(), summary.retrain_job)
        elif summary.model_uri:
            summary.model_dir = summary.model_uri


def _job_id(name: str) -> str:
    """A pipeline job id for this run (lowercase letters, digits, hyphens), chosen here so that
    a signal that comes while the job is being created can still cancel it by name."""
    import re
    import secrets

    stem = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:80] or "run"
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{stem}-{stamp}-{secrets.token_hex(3)}"


def _say(line: str) -> None:
    print(f"hydra-vertex: {line}", file=sys.stderr, flush=True)


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
            spec.source,
            spec.name,
            log=lambda line: print(f"image: {line}", file=out, flush=True),
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
    """Compose the app's config in the image for every branch of the space, before any trial;
    once per image, space and command (an unchanged app re-run is not checked again)."""
    marker = _preflight_marker(spec, space, image)
    if marker.is_file():
        if mode != "quiet":
            print(
                f"pre-flight: the app's config composed for {marker.read_text().strip()} "
                "branch(es) of the space (this image, space and command: checked before)",
                file=out,
                flush=True,
            )
        return
    count, seconds = preflight.check(space, spec.command, images.runtime(image.workdir))
    with contextlib.suppress(OSError):  # a read-only cache only means checking again next time
        from hydra_vertex.files import atomic_write_text

        atomic_write_text(marker, f"{count}\n")
    if mode != "quiet":
        print(
            f"pre-flight: the app's config composes for {count} branch(es) of the space "
            f"({seconds:.1f}s)",
            file=out,
            flush=True,
        )


def _preflight_marker(spec: jobfile.JobSpec, space: SearchSpace, image: images.LocalImage) -> Path:
    """Where a passed pre-flight is remembered: keyed by the image (source snapshot and
    environment, by content), the space and the app command."""
    import hashlib
    import json

    from hydra_vertex.search_space import cache_dir

    key = json.dumps(
        [image.ref, str(image.environment.python), space.to_dict(), list(spec.command)],
        sort_keys=True,
        default=str,
    )
    return cache_dir() / "preflight" / hashlib.sha256(key.encode()).hexdigest()
