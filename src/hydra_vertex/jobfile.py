"""``JOB.yaml``: what to tune, how much, and where. Every error names the field and the file.

.. code-block:: yaml

    name: digits                      # job and image name: lowercase letters, digits, - _ .
    app:
      source: .                       # the app's source directory, relative to this file
      command: [python, train.py]     # how the app starts (an argv list, no shell)
      requirements: null              # default: the source's requirements.txt (a venv per image)
      python: null                    # or an existing interpreter / virtual environment
    search_space: search_space.yaml   # a search-space file, or a Hydra config with hydra.sweeper
    tuning:
      max_trials: 12
      parallel_trials: 2
      max_failed_trials: 0            # 0: the service decides (see docs/emulator.md)
      seed: 0                         # the local suggestion engine's seed (reproducible runs)
      timeout_seconds: 3600           # per trial
      algorithm: bayesian             # bayesian | grid | random (see hydra_vertex.tuning_options)
      measurement_selection: last     # last | best
      early_stopping: median          # median | decay_curve | {rule: ..., use_elapsed_duration: }
    retrain:
      overrides: [trainer.max_iter=100]   # Hydra overrides added to the winner's for the final run
      vertex: {accelerator_count: 1}      # machine settings that differ for the retrain
    wandb:                            # optional; passed to trials and the retrain
      project: digits
    vertex:
      project: my-project
      region: us-central1
      staging_bucket: gs://my-bucket/hydra-vertex
      machine_type: n1-standard-4
      service_account: null
      accelerator_type: NVIDIA_TESLA_T4   # machine, disk, replicas, scheduling: see machine.py
      accelerator_count: 2
      scheduling_strategy: SPOT
      labels: {team: vision}          # network, reserved_ip_ranges, encryption_key, labels too
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra_vertex.errors import JobFileError, SettingError
from hydra_vertex.machine import (
    JOB_SETTING_KEYS,
    MACHINE_KEYS,
    JobSettings,
    Machine,
    check_setting,
)
from hydra_vertex.tuning_options import KEYS as TUNING_OPTION_KEYS
from hydra_vertex.tuning_options import TuningOptions

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_TOP_KEYS = {"name", "app", "search_space", "tuning", "retrain", "wandb", "vertex"}
_WANDB_KEYS = {"project", "entity", "tags", "mode", "watch", "log_model"}


@dataclass(frozen=True)
class Tuning:
    max_trials: int = 12
    parallel_trials: int = 2
    max_failed_trials: int = 0
    seed: int | None = None
    timeout_seconds: int | None = None
    options: TuningOptions = field(default_factory=TuningOptions)  # algorithm, early stopping


_TUNING_KEYS = {*(f for f in Tuning.__dataclass_fields__ if f != "options"), *TUNING_OPTION_KEYS}


@dataclass(frozen=True)
class VertexSettings:
    project: str = "local-project"
    region: str = "us-central1"
    staging_bucket: str = "gs://hydra-vertex-local"
    service_account: str | None = None
    machine: Machine = field(default_factory=Machine)  # the trials' (and the retrain's default)
    job: JobSettings = field(default_factory=JobSettings)  # network, KMS key, labels

    @property
    def machine_type(self) -> str:
        return self.machine.machine_type


_VERTEX_KEYS = {"project", "region", "staging_bucket", "service_account"}


@dataclass(frozen=True)
class JobSpec:
    path: Path
    name: str
    source: Path
    command: list[str]
    search_space: Path
    tuning: Tuning = field(default_factory=Tuning)
    retrain_overrides: list[str] = field(default_factory=list)
    wandb: dict[str, Any] = field(default_factory=dict)
    vertex: VertexSettings = field(default_factory=VertexSettings)
    retrain_vertex: dict[str, Any] = field(default_factory=dict)  # checked machine overrides
    python: Path | None = None  # app.python: the interpreter of the local image
    requirements: Path | None = None  # app.requirements (else the source's requirements.txt)
    tuning_keys: frozenset[str] = frozenset()  # the tuning keys the job file sets

    @property
    def retrain_machine(self) -> Machine:
        return Machine.from_dict(self.retrain_vertex, self.vertex.machine)


def load(path: str | os.PathLike[str]) -> JobSpec:
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise JobFileError(f"cannot read job file {str(p)!r}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise JobFileError(f"{p}: not valid YAML: {e}") from None
    return parse(data, p)


@dataclass(frozen=True)
class Origin:
    """Where settings are written, so that an error names a field as its reader knows it: a job
    file (``job.yaml: 'tuning.seed' must be ...``) or a Hydra config's sweeper block
    (``hydra.sweeper.tuning.seed: must be ...``; ``names`` renames a section there, as
    ``retrain.vertex`` -> ``retrain_vertex``)."""

    path: Path | None = None
    prefix: str = ""
    doc: str = "docs/job-file.md"
    names: tuple[tuple[str, str], ...] = ()

    def name(self, field_: str) -> str:
        for old, new in self.names:
            if field_ == old or field_.startswith(old + "."):
                return new + field_[len(old) :]
        return field_

    def error(self, field_: str, rule: str, value: Any, hint: str = "") -> JobFileError:
        see = f" (see {self.doc})"
        if self.path is None:
            where = f"{self.prefix}{self.name(field_)}"
            return JobFileError(f"{where}: {rule}, got {value!r}{hint}{see}")
        return JobFileError(f"{self.path}: '{field_}' {rule}, got {value!r}{hint}{see}")

    def unknown(self, section: str, unknown: list[str], allowed: set[str]) -> JobFileError:
        if self.path is None:
            return JobFileError(
                f"{self.prefix}{self.name(section)}: unknown key(s) {unknown}; allowed: "
                f"{sorted(allowed)} (see {self.doc})"
            )
        return JobFileError(
            f"{self.path}: unknown key(s) {unknown} in '{section}'; allowed: {sorted(allowed)}"
        )

    def text(self, field_: str, message: str) -> JobFileError:
        if self.path is None:
            return JobFileError(f"{self.prefix}{self.name(field_)}: {message}")
        return JobFileError(f"{self.path}: {message}")


def _err(where: Path | Origin, field_: str, rule: str, value: Any, hint: str = "") -> JobFileError:
    origin = where if isinstance(where, Origin) else Origin(where)
    return origin.error(field_, rule, value, hint)


def setting_error(where: Path | Origin, section: str, e: SettingError) -> JobFileError:
    """A :class:`SettingError` from ``section`` of the job file at ``where`` (or a sweeper's
    block)."""
    return _err(where, f"{section}.{e.field}", e.rule, e.value, e.hint)


def _section(
    data: Mapping[str, Any], key: str, where: Path | Origin, allowed: set[str], name: str = ""
) -> dict[str, Any]:
    origin = where if isinstance(where, Origin) else Origin(where)
    name = name or key
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise origin.error(name, "must be a mapping", value)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise origin.unknown(name, unknown, allowed)
    return dict(value)


def _int(where: Path | Origin, field_: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _err(where, field_, f"must be an integer >= {minimum}", value)
    return value


@dataclass(frozen=True)
class Settings:
    """The job file's ``tuning``, ``retrain``, ``wandb`` and ``vertex`` sections, checked."""

    tuning: Tuning
    retrain_overrides: list[str]
    wandb: dict[str, Any]
    vertex: VertexSettings
    retrain_vertex: dict[str, Any]
    tuning_keys: frozenset[str]  # the tuning keys that are set


def parse_settings(
    data: Mapping[str, Any], origin: Origin, vertex_extra: frozenset[str] = frozenset()
) -> Settings:
    """The ``tuning``, ``retrain``, ``wandb`` and ``vertex`` sections of ``data`` (a job file, or
    the Hydra sweeper's block, which has the same sections), every error naming its field.
    ``vertex_extra``: keys the caller reads from ``vertex`` itself (and leaves out of ``data``)."""
    t = _section(data, "tuning", origin, _TUNING_KEYS)
    try:
        options = TuningOptions.from_dict({k: t[k] for k in TUNING_OPTION_KEYS if k in t})
    except SettingError as e:
        raise setting_error(origin, "tuning", e) from None
    tuning = Tuning(
        max_trials=_int(origin, "tuning.max_trials", t.get("max_trials", 12), 1),
        parallel_trials=_int(origin, "tuning.parallel_trials", t.get("parallel_trials", 2), 1),
        max_failed_trials=_int(
            origin, "tuning.max_failed_trials", t.get("max_failed_trials", 0), 0
        ),
        seed=None if t.get("seed") is None else _int(origin, "tuning.seed", t["seed"], 0),
        timeout_seconds=None
        if t.get("timeout_seconds") is None
        else _int(origin, "tuning.timeout_seconds", t["timeout_seconds"], 1),
        options=options,
    )
    if tuning.parallel_trials > tuning.max_trials:
        raise origin.text(
            "tuning.parallel_trials",
            f"'tuning.parallel_trials' ({tuning.parallel_trials}) must not exceed "
            f"'tuning.max_trials' ({tuning.max_trials})",
        )

    r = _section(data, "retrain", origin, {"overrides", "vertex"})
    overrides = r.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise _err(origin, "retrain.overrides", "must be a list of Hydra override strings",
                   overrides)

    wandb = _section(data, "wandb", origin, _WANDB_KEYS)
    v = _section(
        data, "vertex", origin, {*_VERTEX_KEYS, *MACHINE_KEYS, *JOB_SETTING_KEYS, *vertex_extra}
    )
    scalars = {k: v[k] for k in _VERTEX_KEYS & set(v) if v[k] is not None or k == "service_account"}
    vertex = VertexSettings(**scalars)
    if not vertex.staging_bucket.startswith("gs://"):
        raise _err(origin, "vertex.staging_bucket", "must be a gs:// URI", vertex.staging_bucket)
    try:
        machine = Machine.from_dict({k: v[k] for k in MACHINE_KEYS if k in v})
        job = JobSettings.from_dict(
            {k: v[k] for k in JOB_SETTING_KEYS if k in v}, region=vertex.region
        )
    except SettingError as e:
        raise setting_error(origin, "vertex", e) from None
    vertex = replace(vertex, machine=machine, job=job)
    retrain_vertex = _section(r, "vertex", origin, set(MACHINE_KEYS), name="retrain.vertex")
    try:  # each setting, then the retrain's whole machine (the trials' one, overridden)
        retrain_vertex = {k: check_setting(k, raw) for k, raw in retrain_vertex.items()}
        Machine.from_dict(retrain_vertex, machine)
    except SettingError as e:
        raise setting_error(origin, "retrain.vertex", e) from None
    return Settings(
        tuning=tuning,
        retrain_overrides=list(overrides),
        wandb=wandb,
        vertex=vertex,
        retrain_vertex=retrain_vertex,
        tuning_keys=frozenset(k for k, v in t.items() if v is not None),
    )


def parse(data: Any, path: Path) -> JobSpec:
    if not isinstance(data, Mapping):
        raise JobFileError(f"{path}: a job file is a mapping (name, app, search_space, ...)")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise JobFileError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    base = path.parent

    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _err(path, "name", f"must match {_NAME_RE.pattern}", name)

    app = _section(data, "app", path, {"source", "command", "python", "requirements"})
    source = base / str(app.get("source", "."))
    if not source.is_dir():
        raise _err(
            path, "app.source", "must be a directory (relative to the job file)", str(source)
        )
    command = app.get("command")
    if isinstance(command, str):
        import shlex

        command = shlex.split(command)
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise _err(path, "app.command", "must be a non-empty list of strings", command)

    ss = data.get("search_space")
    if not isinstance(ss, str) or not ss:
        raise _err(path, "search_space", "must name a search-space file or a Hydra config", ss)
    ss_path = base / ss
    if not ss_path.is_file():
        raise _err(path, "search_space", "must be an existing file (relative to the job file)",
                   str(ss_path))

    settings = parse_settings(data, Origin(path))
    python, requirements = _environment(app, path)
    return JobSpec(
        path=path,
        name=name,
        source=source.resolve(),
        command=list(command),
        search_space=ss_path.resolve(),
        tuning=settings.tuning,
        retrain_overrides=settings.retrain_overrides,
        wandb=settings.wandb,
        vertex=settings.vertex,
        retrain_vertex=settings.retrain_vertex,
        python=python,
        requirements=requirements,
        tuning_keys=settings.tuning_keys,
    )


def _environment(app: Mapping[str, Any], path: Path) -> tuple[Path | None, Path | None]:
    """``app.python`` (an interpreter, a virtual environment or a command on PATH) and
    ``app.requirements`` (a file), relative to the job file; at most one of them."""
    import shutil

    python, requirements = app.get("python"), app.get("requirements")
    if python is not None and requirements is not None:
        raise JobFileError(
            f"{path}: set 'app.python' (an existing environment) or 'app.requirements' (one to "
            f"build), not both"
        )
    if python is not None:
        if not isinstance(python, str) or not python:
            raise _err(path, "app.python", "must name an interpreter or a virtual environment",
                       python)
        candidate = path.parent / python
        if candidate.is_dir():
            candidate = candidate / "bin" / "python"
        if not candidate.is_file():
            found = shutil.which(python) if "/" not in python else None
            if found is None:
                raise _err(
                    path, "app.python", "must be an existing interpreter or virtual environment "
                    "(relative to the job file) or a command on PATH", python
                )
            candidate = Path(found)
        return candidate.absolute(), None
    if requirements is not None:
        file = path.parent / str(requirements)
        if not isinstance(requirements, str) or not file.is_file():
            raise _err(path, "app.requirements", "must be an existing file (relative to the job "
                       "file)", requirements)
        return None, file.resolve()
    return None, None


def apply_sweeper(spec: JobSpec, sweeper: Any) -> tuple[JobSpec, list[str]]:
    """The job with a ``hydra.sweeper`` block's budget where the job file sets none: ``n_trials``
    -> ``tuning.max_trials``, ``n_jobs`` -> ``tuning.parallel_trials``, ``max_failure_rate`` ->
    ``tuning.max_failed_trials`` (see :func:`max_failed_for_rate`), ``sampler.seed`` ->
    ``tuning.seed``. Returns the notes to print.

    ``sweeper`` is a :class:`hydra_vertex.search_space.SweeperSettings`.
    """
    from dataclasses import replace

    changes: dict[str, int] = {}
    if sweeper.seed is not None and "seed" not in spec.tuning_keys:
        changes["seed"] = sweeper.seed
    if sweeper.n_trials is not None and "max_trials" not in spec.tuning_keys:
        changes["max_trials"] = sweeper.n_trials
    if sweeper.n_jobs is not None and "parallel_trials" not in spec.tuning_keys:
        changes["parallel_trials"] = sweeper.n_jobs
    max_trials = changes.get("max_trials", spec.tuning.max_trials)
    if sweeper.max_failure_rate is not None and "max_failed_trials" not in spec.tuning_keys:
        changes["max_failed_trials"] = max_failed_for_rate(sweeper.max_failure_rate, max_trials)
    if not changes:
        return spec, []
    if changes.get("parallel_trials", spec.tuning.parallel_trials) > max_trials:
        changes["parallel_trials"] = max_trials  # the job file set at most one of the two
    tuning = replace(spec.tuning, **changes)
    names = {
        "max_trials": "n_trials", "parallel_trials": "n_jobs",
        "max_failed_trials": "max_failure_rate", "seed": "sampler.seed",
    }
    note = ", ".join(f"tuning.{k}={v} (from {names[k]})" for k, v in changes.items())
    return replace(spec, tuning=tuning), [f"{sweeper.source}: {note}"]


def max_failed_for_rate(rate: float, max_trials: int) -> int:
    """hydra-optuna-sweeper stops once the failed share exceeds ``max_failure_rate``; Vertex's
    ``max_failed_trial_count`` is that count (``floor(rate * max_trials) + 1``). A rate of 1 never
    stops, which is Vertex's 0 ("the service decides")."""
    import math

    return 0 if rate >= 1 else math.floor(rate * max_trials) + 1
