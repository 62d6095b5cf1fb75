"""The work of ``hydra/sweeper=vertex``, imported when a sweep starts.

1. Plan, before anything runs: the search space (``hydra.sweeper.params`` plus the sweep overrides
   of the command line), the overrides fixed for every trial (the plain ones), the metric and
   direction, the budget, where it runs (the job file's sections, same names). Bad input stops
   here with one Hydra-style line naming the key (``hydra.sweeper.params.lr: ...``).
2. Pre-flight: every branch of the space composes with the app's config, in this process.
3. The image: locally, the current directory as it is, run by this interpreter
   (:func:`hydra_vertex.images.link_local`); on Vertex AI, the given ``vertex.image_uri`` or the
   source built by Cloud Build as ``hydra-vertex submit`` builds it.
4. The steps of the pipeline, in this process: the tuning job (created once, cancelled on Ctrl-C
   or SIGTERM, progress shown as ``hydra-vertex run --local`` shows it), the best trial, and with
   ``retrain: true`` the retrain.
5. The sweep directory: ``optimization_results.yaml`` (as hydra-optuna-sweeper writes it),
   ``SUMMARY.json``, ``report.html`` and ``hydra-vertex.log`` (the steps' own log).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_vertex.errors import HydraVertexError

log = logging.getLogger(__name__)

#: The page that documents the sweeper (named in its error lines).
DOC = "docs/sweeper.md"
DEFAULT_METRIC = "objective"
RESULTS_FILE = "optimization_results.yaml"
#: The settings that are the job file's, and the sweeper's names for them.
_RENAMED = (("retrain.vertex", "retrain_vertex"), ("retrain.overrides", "retrain_overrides"))
#: hydra-optuna-sweeper's keys that :func:`hydra_vertex.search_space.sweeper_settings` reads.
_OPTUNA_KEYS = ("n_trials", "n_jobs", "max_failure_rate", "sampler", "storage")
#: Hydra overrides that do not reach a trial: a trial is one run, and the sweep is the tuning job.
_NOT_FOR_TRIALS = re.compile(
    r"^(hydra\.mode|hydra\.sweeper(\..*)?|hydra\.sweep(\..*)?|hydra\.launcher(\..*)?"
    r"|hydra/launcher(/.*)?|hydra\.run(\..*)?)$"
)
_NAME_RE = re.compile(r"[^a-z0-9._-]+")


class SweepError(HydraVertexError, CompactHydraException):
    """Bad input or a failed sweep: Hydra prints the message alone, one line."""


@dataclass(frozen=True)
class Plan:
    """Everything decided before anything runs."""

    name: str
    space: Any  # SearchSpace
    settings: Any  # hydra_vertex.jobfile.Settings, with the sweeper's budget applied
    app: list[str]  # how the app starts: [APP.py] or [-m, module], with Hydra's config flags
    hydra_overrides: list[str]  # the command line's that a trial needs (hydra/sweeper=vertex ...)
    fixed: list[str]  # the plain task overrides: fixed for every trial and the retrain
    on_vertex: bool
    image_uri: str | None
    retrain: bool
    notes: list[str] = field(default_factory=list)
    swept_on_command_line: dict[str, str] = field(default_factory=dict)  # key -> the override

    def where(self, key: str) -> str:
        """How an error names parameter ``key``: as the user wrote it."""
        given = self.swept_on_command_line.get(key)
        return f"{given!r} (on the command line)" if given else f"hydra.sweeper.params.{key}"

    @property
    def overrides(self) -> list[str]:
        """What every trial's command line carries before its own values."""
        return [*self.hydra_overrides, *self.fixed]

    @property
    def retrain_overrides(self) -> list[str]:
        return list(self.settings.retrain_overrides)


class VertexSweeperImpl:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in settings.items()
        }
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context

    # -- the sweep ---------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.hydra_context is not None
        started = time.monotonic()
        try:
            plan = make_plan(self.settings, self.config, arguments)
        except HydraVertexError as e:
            raise SweepError(_one_line(e)) from None
        for note in plan.notes:
            log.warning(f"warning: {note}")
        preflight(plan, self.config, self.hydra_context)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        run_sweep(plan, sweep_dir, started)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split("\n"))


# -- 1. the plan -------------------------------------------------------------------------------
def make_plan(settings: Mapping[str, Any], config: DictConfig, arguments: Sequence[str]) -> Plan:
    """The sweep's plan from the sweeper's settings, the composed config and the task overrides
    of the command line. Raises :class:`HydraVertexError` (one line naming the key)."""
    from hydra_vertex import jobfile
    from hydra_vertex.search_space import SearchSpaceError, from_mapping, sweeper_settings

    params, fixed, swept = _space_and_fixed(settings.get("params"), arguments)
    if settings.get("custom_search_space"):
        raise SweepError(
            f"hydra.sweeper.custom_search_space: {settings['custom_search_space']!r} is not "
            f"supported: Vertex AI needs the whole space up front; write each parameter under "
            f"hydra.sweeper.params in Hydra's sweep grammar (see {DOC})"
        )
    direction = _direction(settings.get("direction"))
    metric = settings.get("metric") or OmegaConf.select(config, "optimized_metric") or (
        DEFAULT_METRIC
    )
    block = {k: settings.get(k) for k in _OPTUNA_KEYS}
    block["algorithm"] = settings.get("algorithm")
    try:
        sweeper = sweeper_settings({"hydra": {"sweeper": block}}, source="hydra.sweeper")
        space = from_mapping(
            {
                "metric": metric,
                "direction": direction,
                "algorithm": settings.get("algorithm") or _algorithm(settings.get("sampler")),
                "measurement_selection": settings.get("measurement_selection") or "last",
                "params": params,
            },
            source="hydra.sweeper",
        )
    except SearchSpaceError as e:
        raise SweepError(_hydra_style(str(e))) from None
    origin = jobfile.Origin(prefix="hydra.sweeper.", doc=DOC, names=_RENAMED)
    vertex = dict(settings.get("vertex") or {})
    image_uri = vertex.get("image_uri")
    sections = {
        "tuning": settings.get("tuning") or {},
        "wandb": settings.get("wandb") or {},
        "vertex": vertex,
        "retrain": {
            "overrides": list(settings.get("retrain_overrides") or []),
            "vertex": settings.get("retrain_vertex") or {},
        },
    }
    parsed = jobfile.parse_settings(sections, origin, vertex_extra=frozenset({"image_uri"}))
    parsed, _ = jobfile.apply_sweeper(parsed, sweeper)  # n_trials, n_jobs: the budget, as asked
    try:
        space = parsed.tuning.options.apply(space)
    except HydraVertexError as e:
        raise SweepError(f"hydra.sweeper.tuning: {_one_line(e)}") from None
    on_vertex = _on_vertex(vertex, image_uri)
    retrain = settings.get("retrain")
    if not isinstance(retrain, bool):
        raise SweepError(f"hydra.sweeper.retrain: must be true or false, got {retrain!r}")
    return Plan(
        name=_name(settings.get("study_name"), config),
        space=space,
        settings=parsed,
        app=app_command(),
        hydra_overrides=_hydra_overrides(config),
        fixed=fixed,
        on_vertex=on_vertex,
        image_uri=str(image_uri) if image_uri else None,
        retrain=retrain,
        notes=[n.replace("hydra.sweeper (hydra.sweeper)", "hydra.sweeper") for n in sweeper.notes],
        swept_on_command_line=swept,
    )


def _space_and_fixed(
    params: Any, arguments: Sequence[str]
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """The space's entries (``hydra.sweeper.params``, then the command line's sweep overrides)
    each checked alone, and the plain task overrides (a plain ``key=value`` of a key in the space
    fixes it, as hydra-optuna-sweeper does)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_vertex.search_space import check_entry

    if params is not None and not isinstance(params, Mapping):
        raise SweepError(
            f"hydra.sweeper.params: must be a mapping of Hydra key -> sweep expression, got "
            f"{params!r}"
        )
    entries: dict[str, Any] = {}
    for raw, spec in (params or {}).items():
        if spec is None:
            continue  # a key set to null: not swept (a config can drop an entry so)
        check_entry(str(raw), spec, where=f"hydra.sweeper.params.{raw}")
        entries[str(raw)] = spec
    fixed: list[str] = []
    swept: dict[str, str] = {}
    parsed = OverridesParser.create().parse_overrides(list(arguments))
    for override, text in zip(parsed, arguments, strict=True):
        key, _, value = text.partition("=")
        plain = override.key_or_group
        if override.is_sweep_override():
            check_entry(key, value, where=f"{text!r} (on the command line)")
            _drop(entries, plain)
            entries[key] = value
            swept[plain] = text
        else:
            _drop(entries, plain)
            swept.pop(plain, None)
            fixed.append(text)
    if not entries:
        raise SweepError(
            "hydra.sweeper.params: the search space is empty: set hydra.sweeper.params or give "
            "sweep overrides on the command line ('lr=interval(0.001, 0.1)', 'model=choice(a, b)')"
            f" (see {DOC})"
        )
    return entries, fixed, swept


def _drop(entries: dict[str, Any], key: str) -> None:
    for raw in [k for k in entries if k.lstrip("+") == key]:
        del entries[raw]


def _direction(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 1:
            raise SweepError(
                f"hydra.sweeper.direction: one objective is tuned (minimize or maximize), got "
                f"{list(value)!r}"
            )
        value = value[0]
    text = str(getattr(value, "name", value)).lower()
    if text not in ("minimize", "maximize"):
        raise SweepError(f"hydra.sweeper.direction: must be minimize or maximize, got {value!r}")
    return text


def _algorithm(sampler: Any) -> str:
    from hydra_vertex.search_space import sampler_algorithm

    return sampler_algorithm(sampler)[1]


_STYLE = (
    (re.compile(r"^hydra\.sweeper(?: \(hydra\.sweeper\))?: parameter '([^']+)': "),
     r"hydra.sweeper.params.\1: "),
    (re.compile(r"^hydra\.sweeper(?: \(hydra\.sweeper\))?: '([\w.]+)' "), r"hydra.sweeper.\1: "),
)


def _hydra_style(message: str) -> str:
    """A search-space line in Hydra's style: ``hydra.sweeper: parameter 'lr': ...`` as
    ``hydra.sweeper.params.lr: ...``, ``hydra.sweeper: 'metric' must ...`` as
    ``hydra.sweeper.metric: must ...``."""
    for pattern, replacement in _STYLE:
        if pattern.match(message):
            return pattern.sub(replacement, message, count=1)
    return message


def _on_vertex(vertex: Mapping[str, Any], image_uri: Any) -> bool:
    """On Vertex AI when a project and a region are set; else on the local emulator."""
    project, region = vertex.get("project"), vertex.get("region")
    if project is None and region is None:
        if image_uri:
            raise SweepError(
                "hydra.sweeper.vertex.image_uri: an image runs on Vertex AI: set "
                "hydra.sweeper.vertex.project and hydra.sweeper.vertex.region too"
            )
        return False
    missing = "region" if region is None else "project" if project is None else None
    if missing is not None:
        raise SweepError(
            f"hydra.sweeper.vertex.{missing}: Vertex AI needs both a project and a region (set "
            f"neither to tune on the local emulator) (see {DOC})"
        )
    if not vertex.get("staging_bucket"):
        raise SweepError(
            "hydra.sweeper.vertex.staging_bucket: on Vertex AI the jobs write to a bucket of "
            "the project: set it to gs://BUCKET[/PREFIX]"
        )
    return True


def _name(study_name: Any, config: DictConfig) -> str:
    """The tuning job's name (``<name>-tuning``): the study's name, else the app's."""
    raw = str(study_name or OmegaConf.select(config, "hydra.job.name") or "hydra-sweep")
    name = _NAME_RE.sub("-", raw.lower()).strip("-._")[:63]
    return name or "hydra-sweep"


def app_command() -> list[str]:
    """How this Hydra app was started, less the interpreter and the overrides: ``APP.py`` (or
    ``-m MODULE``) with Hydra's config flags (``--config-path``/``--config-name``/
    ``--config-dir``), as every trial must start it."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        start = ["-m", spec.name.removesuffix(".__main__")]
    else:
        start = [sys.argv[0]]
    flags: list[str] = []
    with contextlib.suppress(Exception, SystemExit):
        from hydra._internal.utils import get_args_parser

        args = get_args_parser().parse_args(sys.argv[1:])
        for flag, value in (
            ("--config-path", args.config_path),
            ("--config-name", args.config_name),
            ("--config-dir", args.config_dir),
        ):
            if value is not None:
                flags.append(f"{flag}={value}")
    return [*start, *flags]


def _hydra_overrides(config: DictConfig) -> list[str]:
    """The command line's Hydra overrides a trial needs to compose the same config (the sweeper
    selected as ``hydra/sweeper=vertex``, logging ...), without those of the sweep itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    raw = [str(o) for o in OmegaConf.select(config, "hydra.overrides.hydra", default=[]) or []]
    out = []
    for text, override in zip(raw, OverridesParser.create().parse_overrides(raw), strict=True):
        key = override.key_or_group
        if not _NOT_FOR_TRIALS.match(key):
            out.append(text)
    return out


# -- 2. pre-flight -----------------------------------------------------------------------------
def preflight(plan: Plan, config: DictConfig, hydra_context: HydraContext) -> None:
    """Every branch of the space composes with the app's config (in this process)."""
    from hydra_vertex import preflight as pf

    if not pf.enabled():
        return
    def compose(overrides: list[str]) -> Any:  # the command line's Hydra overrides come first
        return hydra_context.config_loader.load_sweep_config(config, [*plan.fixed, *overrides])

    try:
        count = pf.check_in_process(plan.space, compose, plan.where)
    except pf.PreflightError as e:
        raise SweepError(_one_line(e)) from None
    log.info(f"pre-flight: the app's config composes for {count} branch(es) of the space")


# -- 3. and 4. the run -------------------------------------------------------------------------
class _Progress:
    """What the display shows: the tuning job as the launcher last read it, and the stage."""

    def __init__(self, plan: Plan, started: float) -> None:
        from hydra_vertex.progress import Snapshot

        self.minimize = plan.space.direction == "minimize"
        self.snap = Snapshot(
            stage="starting", max_trials=plan.settings.tuning.max_trials, started=started
        )

    def stage(self, text: str) -> None:
        self.snap = replace(self.snap, stage=text)

    def job(self, job: Any) -> None:
        from hydra_vertex.jobs import state_name
        from hydra_vertex.progress import best_of
        from hydra_vertex.trials import trial_results

        trials = trial_results(job) if job.study_spec.metrics else []
        state = state_name(job)
        running = state in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING")
        stage = "tuning" if running else f"tuning {state.removeprefix('JOB_STATE_').lower()}"
        self.snap = replace(
            self.snap, stage=stage, trials=trials, best=best_of(trials, self.minimize)
        )

    def __call__(self) -> Any:
        return self.snap


@dataclass
class _Run:
    """Where the run talks to, and what it has launched (for the summary and the cancel)."""

    project: str
    region: str
    storage_root: Path | None = None
    started_here: bool = False
    tuning_job: str | None = None
    retrain_job: str | None = None


def run_sweep(plan: Plan, sweep_dir: Path, started: float) -> None:
    from hydra_vertex.summary import Summary

    summary = Summary(
        name=plan.name,
        metric=plan.space.metric,
        direction=plan.space.direction,
        retrain_overrides=plan.retrain_overrides,
    )
    summary.log = str(sweep_dir / "hydra-vertex.log")
    vertex = plan.settings.vertex
    run = _Run(project=vertex.project, region=vertex.region)
    stream = sys.stdout
    failure: BaseException | None = None
    try:
        with _where(plan, run):
            try:
                with _steps_log(Path(summary.log)):
                    _tune(plan, run, summary, sweep_dir, stream, started)
            except (KeyboardInterrupt, SystemExit, HydraVertexError) as e:
                failure = e
                summary.status, summary.error = _failed(e)
                if not isinstance(e, HydraVertexError):
                    _wait_until_done(run)  # the trials' final states, for the summary
            finally:
                _refresh(summary, run, plan)
                summary.elapsed_seconds = round(time.monotonic() - started, 2)
                _finish(summary, run, sweep_dir, stream)
    except HydraVertexError as e:  # no emulator, no client: before anything ran
        raise SweepError(_one_line(e)) from None
    if isinstance(failure, KeyboardInterrupt):
        raise SystemExit(130)
    if isinstance(failure, SystemExit):
        raise failure
    if failure is not None:
        raise SweepError(f"{_one_line(failure)} (log: {summary.log})") from None


def _failed(e: BaseException) -> tuple[str, str]:
    if isinstance(e, KeyboardInterrupt):
        return "cancelled", "interrupted (Ctrl-C): the tuning job was cancelled"
    if isinstance(e, SystemExit):  # SIGTERM, after the tuning job was cancelled
        return "cancelled", f"stopped (exit {e.code}): the tuning job was cancelled"
    return "failed", str(e)


def _refresh(summary: Any, run: _Run, plan: Plan) -> None:
    """The tuning job's trials as they are now (also after a failure or a cancel)."""
    from hydra_vertex.results import trials_of
    from hydra_vertex.steps.best import read_job

    if run.tuning_job:
        with contextlib.suppress(Exception):
            trials_of(summary, read_job(run.region, run.tuning_job), plan.space)


@contextlib.contextmanager
def _where(plan: Plan, run: _Run) -> Iterator[None]:
    """Vertex AI (or the emulator ``HYDRA_VERTEX_EMULATOR`` names, with a project and region set)
    or the local emulator: the named one, a running one, else one started for the sweep."""
    _check_client()
    if plan.on_vertex:
        from hydra_vertex.vertex import init_aiplatform

        init_aiplatform(run.project, run.region, staging_bucket=plan.settings.vertex.staging_bucket)
        yield
        return
    from hydra_vertex.local_emulator import DEFAULT_STATE_DIR, emulator, pointed_at

    _check_local_extras()
    with emulator(DEFAULT_STATE_DIR, plan.settings.tuning.seed) as emu, pointed_at(emu):
        run.storage_root = emu.storage_root.resolve() if emu.storage_root else None
        run.started_here = emu.started_here
        log.info(f"local emulator at {emu.endpoint}" + (" (started for this sweep)"
                                                      if emu.started_here else ""))
        yield


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def _check_client() -> None:
    if not _installed("google.cloud.aiplatform"):
        raise SweepError(
            "hydra/sweeper=vertex talks to Vertex AI (or its local emulator) with "
            "google-cloud-aiplatform, which this environment lacks: pip install "
            "'hydra-vertex[local]' (or 'hydra-vertex[cloud]' with an emulator already running)"
        )


def _check_local_extras() -> None:
    from hydra_vertex.vertex import EMULATOR_ENV

    if os.environ.get(EMULATOR_ENV) or _installed("optuna"):
        return
    from hydra_vertex.local_emulator import DEFAULT_STATE_DIR

    if (DEFAULT_STATE_DIR / "endpoint.json").is_file():
        return
    raise SweepError(
        "hydra/sweeper=vertex: no emulator is running and this environment cannot start one "
        "(hydra-vertex[local] is not installed): start one with 'hydra-vertex emulator' and set "
        "HYDRA_VERTEX_EMULATOR, or pip install 'hydra-vertex[local]'"
    )


@contextlib.contextmanager
def _steps_log(path: Path) -> Iterator[None]:
    """The steps' own lines (job created, each trial, best trial) go to the sweep's log file;
    the terminal shows the progress display."""
    with open(path, "a", buffering=1) as f, contextlib.redirect_stdout(f):
        yield


def _tune(
    plan: Plan, run: _Run, summary: Any, sweep_dir: Path, stream: Any, started: float
) -> None:
    from hydra_vertex.progress import Display, Watcher
    from hydra_vertex.steps.best import pick
    from hydra_vertex.steps.tune import launch_tuning

    settings = plan.settings
    vertex, tuning = settings.vertex, settings.tuning
    progress = _Progress(plan, started)
    mode = "live" if stream.isatty() else "lines"
    launch_key = f"hydra-sweep/{sweep_dir}/{time.time_ns()}"
    with Display(mode, plan.space.metric, stream) as display:
        watcher = Watcher(progress, display)
        watcher.start()
        try:
            progress.stage("building image")
            image_uri = _image(plan, run, log=_print)
            summary.image_uri = image_uri
            progress.stage("tuning")

            def seen(job: Any) -> None:
                run.tuning_job = str(job.name)
                progress.job(job)

            run.tuning_job = launch_tuning(
                project=run.project,
                location=run.region,
                name=plan.name,
                image_uri=image_uri,
                app_command=_command(plan, image_uri),
                search_space=plan.space,
                max_trial_count=tuning.max_trials,
                parallel_trial_count=tuning.parallel_trials,
                max_failed_trial_count=tuning.max_failed_trials,
                machine_type=vertex.machine_type,
                service_account=vertex.service_account or "",
                staging_bucket=vertex.staging_bucket,
                wandb=settings.wandb,
                seed=-1 if tuning.seed is None else tuning.seed,
                trial_timeout_seconds=tuning.timeout_seconds or 0,
                launch_key=launch_key,
                trial_machine=vertex.machine.to_dict(),
                job_settings=vertex.job.to_dict(),
                tuning_options=tuning.options.to_dict(),
                on_poll=seen,
            )
            progress.stage("picking the best trial")
            best = pick(location=run.region, tuning_job=run.tuning_job, search_space=plan.space)
            summary.best_trial_id, summary.best_value = best.trial_id, best.value
            summary.best_overrides = list(best.overrides)
            summary.best_parameters = dict(best.parameters)
            if plan.retrain:
                progress.stage("retraining")
                _retrain(plan, run, summary, image_uri, launch_key)
            summary.status = "succeeded"
        finally:
            watcher.stop()


def _print(line: str) -> None:
    print(f"[hydra-vertex] {line}", flush=True)


def _command(plan: Plan, image_uri: str) -> list[str]:
    """``sys.executable APP.py <fixed overrides>`` locally; ``python APP.py ...`` in an image
    (its own interpreter, the app's path relative to the source directory)."""
    if not plan.on_vertex:
        return [sys.executable, *plan.app, *plan.overrides]
    app = list(plan.app)
    if app and app[0] != "-m":
        path = Path(app[0]).absolute()
        try:
            app[0] = str(path.relative_to(Path.cwd()))
        except ValueError:
            raise SweepError(
                f"the app {str(path)!r} is outside the current directory, which is the "
                f"image's source: run the sweep from the app's directory or a parent of it"
            ) from None
    return ["python", *app, *plan.overrides]


def _image(plan: Plan, run: _Run, log: Any) -> str:
    if not plan.on_vertex:
        from hydra_vertex.images import link_local

        return link_local(Path.cwd(), plan.name, sys.executable).ref
    if plan.image_uri:
        return plan.image_uri
    from hydra_vertex.api import ensure_bucket
    from hydra_vertex.cloud_build import build_image, upload_source
    from hydra_vertex.components._image import DEFAULT_COMPONENTS_IMAGE

    vertex = plan.settings.vertex
    ensure_bucket(vertex.staging_bucket, run.project, run.region)
    source = upload_source(
        Path.cwd(), vertex.staging_bucket, plan.name, run.project, DEFAULT_COMPONENTS_IMAGE
    )
    log(f"source uploaded to {source}")
    return build_image(source, plan.name, run.project, run.region, log=log)


def _retrain(plan: Plan, run: _Run, summary: Any, image_uri: str, launch_key: str) -> None:
    from hydra_vertex.steps.retrain import retrain

    settings = plan.settings
    vertex = settings.vertex
    model_uri, job = retrain(
        project=run.project,
        location=run.region,
        name=plan.name,
        image_uri=image_uri,
        app_command=_command(plan, image_uri),
        best_overrides=summary.best_overrides,
        retrain_overrides=plan.retrain_overrides,
        machine_type=vertex.machine_type,
        service_account=vertex.service_account or "",
        staging_bucket=vertex.staging_bucket,
        wandb=settings.wandb,
        tuning_job=run.tuning_job or "",
        launch_key=launch_key,
        trial_machine=vertex.machine.to_dict(),
        retrain_machine=settings.retrain_vertex,
        job_settings=vertex.job.to_dict(),
    )
    run.retrain_job = summary.retrain_job = job
    summary.model_uri = model_uri
    summary.model_dir = model_uri


def _wait_until_done(run: _Run, timeout: float = 60.0) -> None:
    """After a cancel, until the emulator has stopped the trials (at most ``timeout``); Vertex AI
    itself takes its time and is not waited for."""
    from hydra_vertex.jobs import TERMINAL, state_name
    from hydra_vertex.steps.best import read_job
    from hydra_vertex.vertex import resolve_endpoint

    if not run.tuning_job or not resolve_endpoint().is_emulator:
        return
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):
        while time.monotonic() < deadline:
            if state_name(read_job(run.region, run.tuning_job)) in TERMINAL:
                return
            time.sleep(0.2)


# -- 5. the sweep directory --------------------------------------------------------------------
def _finish(summary: Any, run: _Run, sweep_dir: Path, stream: Any) -> None:
    """``SUMMARY.json``, ``report.html`` and (with a winner) ``optimization_results.yaml``, then
    the end-of-run table."""
    from hydra_vertex.results import best_so_far, print_summary, where_things_land, write_report

    if summary.best_trial_id is None and summary.trials:
        best_so_far(summary)
    if run.storage_root is not None:
        where_things_land(summary, run.storage_root, summary.retrain_job)
    summary.report = write_report(summary, sweep_dir)
    summary.write(sweep_dir / "SUMMARY.json")
    if summary.status == "succeeded" and summary.best_value is not None:
        write_results(sweep_dir / RESULTS_FILE, summary)
    with contextlib.suppress(Exception):
        print_summary(summary, stream)
    log.info(f"sweep results: {sweep_dir}")


def write_results(path: Path, summary: Any) -> None:
    """``optimization_results.yaml`` as hydra-optuna-sweeper writes it (``name``,
    ``best_params``, ``best_value``), the parameters typed as the app received them."""
    OmegaConf.save(
        OmegaConf.create(
            {
                "name": "vertex",
                "best_params": dict(summary.best_parameters),
                "best_value": summary.best_value,
            }
        ),
        path,
    )
