"""The search space: Hydra sweep grammar in, typed parameters out, ``StudySpec`` both ways.

A search space is written once, in Hydra's own sweep grammar (the ``hydra.sweeper.params`` block
that hydra-optuna-sweeper reads), either in a search-space file::

    metric: val_loss
    direction: minimize
    algorithm: bayesian            # bayesian (default) | grid | random
    measurement_selection: last    # last (the Vertex API default) | best
    params:
      optimizer.lr: tag(log, interval(1e-5, 1e-1))
      model.width: int(interval(16, 256))
      batch_size: choice(32, 64, 128)
      model: choice(mlp, cnn)
      +model.dropout: interval(0.0, 0.5)          # '+': a key the app's config lacks
      optimizer.beta2: tag(reverse_log, interval(0.9, 0.9999))
      model.kernel_size:                           # conditional: exists only when model=cnn
        when: {model: [cnn]}
        values: choice(3, 5, 7)

or in an app's Hydra config (``hydra.sweeper.params`` / ``hydra.sweeper.direction``, with the metric
from ``hydra.sweeper.metric`` or the top-level ``optimized_metric`` of lightning-hydra-template).

Several objectives: ``metric: [a, b]`` with ``direction: [minimize, maximize]`` (one per metric,
in order), or the hydra-optuna-sweeper form ``direction: [minimize, minimize]`` with no metric,
whose objectives are named :func:`objective_names` (``objective_0``, ``objective_1``, ...). The
task function then returns a tuple or list (matched by position) or a mapping (matched by name).

Every expression is parsed by hydra-core's ``OverridesParser``. Mapping to Vertex parameter types:

===============================  =====================================================
``interval(a, b)``               DOUBLE, linear scale
``tag(log, interval(a, b))``     DOUBLE, log scale (``reverse_log`` for reverse-log)
``int(interval(a, b))``          INTEGER (log tags apply too)
``range(...)``, numeric choice   INTEGER when the values are every integer from min to max,
                                 else DISCRETE (sorted; integer-valued DISCRETE stays int)
string (or mixed) ``choice``     CATEGORICAL; a choice over a config group selects the option
===============================  =====================================================

Parsing with Hydra costs ~200 ms, too much for a shim that runs once per trial, so the parsed space
is cached as JSON keyed by the file's content hash (:func:`load_cached`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from hydra_vertex.errors import SearchSpaceError

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud.aiplatform_v1.types import StudySpec

Kind = Literal["DOUBLE", "INTEGER", "CATEGORICAL", "DISCRETE"]
Scale = Literal["linear", "log", "reverse_log"]
Direction = Literal["minimize", "maximize"]
Algorithm = Literal["bayesian", "grid", "random"]
MeasurementSelection = Literal["last", "best"]
Primitive = str | int | float | bool

SCHEMA_VERSION = 1
MAX_DISCRETE_VALUES = 1000
MIN_DISCRETE_GAP = 1e-10
_KNOWN_TAGS = {"log": "log", "reverse_log": "reverse_log"}
_DIRECTIONS = ("minimize", "maximize")
_ALGORITHMS = ("bayesian", "grid", "random")
_SELECTIONS = ("last", "best")
_FILE_KEYS = {"metric", "direction", "algorithm", "measurement_selection", "params"}
#: The prefix of the objectives' names when a list of directions comes without metric names.
OBJECTIVE_PREFIX = "objective_"


def objective_names(count: int) -> list[str]:
    """The names of ``count`` objectives given by position only (``direction: [minimize,
    minimize]`` and no ``metric``): ``objective_0``, ``objective_1``, ..."""
    return [f"{OBJECTIVE_PREFIX}{i}" for i in range(count)]


def parameter_id(key: str) -> str:
    """The Vertex ``parameter_id`` for a Hydra key (the only place that mapping lives).

    Whether Vertex accepts ``.`` in a parameter id is unverified; the mapping is the identity so the
    trial argument ``--optimizer.lr=...`` names the Hydra key directly. Change it here if needed.
    """
    return key


def hydra_key(param_id: str) -> str:
    """Inverse of :func:`parameter_id`."""
    return param_id


def category_string(value: Primitive) -> str:
    """The Vertex category string for a typed choice value (what the trial argument will carry)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Param:
    """One tunable parameter, typed as Vertex will see it and as Hydra must receive it."""

    key: str
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    values: tuple[Primitive, ...] = ()
    scale: Scale = "linear"
    new_key: bool = False
    parent: str | None = None
    parent_values: tuple[Primitive, ...] = ()
    expression: str = field(default="", compare=False)

    @property
    def parameter_id(self) -> str:
        return parameter_id(self.key)

    @property
    def is_int(self) -> bool:
        """True when the Hydra field receives an int (INTEGER, or DISCRETE over integers)."""
        if self.kind == "INTEGER":
            return True
        return self.kind == "DISCRETE" and all(
            isinstance(v, int) and not isinstance(v, bool) for v in self.values
        )

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(category_string(v) for v in self.values)

    def category_value(self, category: str) -> Primitive:
        """The typed Hydra value behind a Vertex category string."""
        for value in self.values:
            if category_string(value) == category:
                return value
        raise SearchSpaceError(
            f"{category!r} is not a category of parameter {self.key!r}; "
            f"the declared categories are {list(self.categories)}"
        )

    @property
    def override_key(self) -> str:
        return ("+" if self.new_key else "") + self.key


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. ``params`` lists parents before their conditional children.

    ``metric``/``direction`` are the (first) objective; ``more_metrics`` the further objectives of
    a multi-objective study, ``(metric, direction)`` each, in order (see :attr:`objectives`)."""

    metric: str
    direction: Direction
    params: tuple[Param, ...]
    algorithm: Algorithm = "bayesian"
    measurement_selection: MeasurementSelection = "last"
    source: str = field(default="", compare=False)
    more_metrics: tuple[tuple[str, Direction], ...] = ()

    def __post_init__(self) -> None:
        _validate_space(self)

    @property
    def objectives(self) -> tuple[tuple[str, Direction], ...]:
        """Every objective, ``(metric, direction)``, in the StudySpec's metric order."""
        return ((self.metric, self.direction), *self.more_metrics)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.objectives)

    @property
    def directions(self) -> tuple[Direction, ...]:
        return tuple(d for _, d in self.objectives)

    @property
    def multi_objective(self) -> bool:
        return bool(self.more_metrics)

    def param(self, key: str) -> Param:
        for p in self.params:
            if p.key == key:
                return p
        raise KeyError(key)

    def by_parameter_id(self) -> dict[str, Param]:
        return {p.parameter_id: p for p in self.params}

    def children(self, key: str | None) -> Iterator[Param]:
        return (p for p in self.params if p.parent == key)

    # -- JSON (the shim's cache, the components' hand-over) -------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema_version"] = SCHEMA_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise SearchSpaceError(
                f"compiled search space has schema_version {version!r}; this hydra-vertex reads "
                f"version {SCHEMA_VERSION} (delete the cache or upgrade hydra-vertex)"
            )
        params = tuple(
            Param(
                **{
                    **p,
                    "values": tuple(p.get("values", ())),
                    "parent_values": tuple(p.get("parent_values", ())),
                }
            )
            for p in data["params"]
        )
        return cls(
            metric=data["metric"],
            direction=data["direction"],
            params=params,
            algorithm=data.get("algorithm", "bayesian"),
            measurement_selection=data.get("measurement_selection", "last"),
            source=data.get("source", ""),
            more_metrics=tuple(
                (str(m), cast(Direction, d)) for m, d in data.get("more_metrics") or ()
            ),
        )

    def to_mapping(self) -> dict[str, Any]:
        """The space as a search-space file's mapping (no ``None`` anywhere), which
        :func:`from_mapping` reads back to an equal space: the pipeline's ``search_space``."""
        params: dict[str, Any] = {}
        for p in self.params:
            expression = p.expression or _expression(p)
            if p.parent is None:
                params[p.override_key] = expression
            else:
                params[p.override_key] = {
                    "when": {p.parent: list(p.parent_values)},
                    "values": expression,
                }
        multi = self.multi_objective
        return {
            "metric": list(self.metrics) if multi else self.metric,
            "direction": list(self.directions) if multi else self.direction,
            "algorithm": self.algorithm,
            "measurement_selection": self.measurement_selection,
            "params": params,
        }

    # -- Vertex StudySpec ------------------------------------------------------------------------
    def to_study_spec(self) -> StudySpec:
        from hydra_vertex._study_spec import space_to_study_spec

        return space_to_study_spec(self)

    @classmethod
    def from_study_spec(cls, spec: StudySpec, source: str = "StudySpec") -> SearchSpace:
        from hydra_vertex._study_spec import study_spec_to_space

        return study_spec_to_space(spec, source)


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


def load(path: str | os.PathLike[str]) -> SearchSpace:
    """Read a search-space file or a Hydra config holding a ``hydra.sweeper`` block."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path, or not UTF-8
        why = e.strerror if isinstance(e, OSError) else str(e)
        raise SearchSpaceError(f"cannot read search-space file {str(p)!r}: {why}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SearchSpaceError(f"{p}: not valid YAML: {e}") from None
    return from_mapping(data, source=str(p))


def from_mapping(data: Any, source: str = "<search space>") -> SearchSpace:
    """Build a space from a parsed search-space file or a Hydra config with ``hydra.sweeper``."""
    if not isinstance(data, Mapping):
        raise SearchSpaceError(
            f"{source}: a search space must be a mapping with 'metric', 'direction' and 'params' "
            f"(or a Hydra config with hydra.sweeper.params), got {type(data).__name__}"
        )
    if "params" in data:
        unknown = sorted(set(data) - _FILE_KEYS)
        if unknown:
            raise SearchSpaceError(
                f"{source}: unknown key(s) {unknown} in search-space file; allowed keys are "
                f"{sorted(_FILE_KEYS)}"
            )
        return _build(
            params=data["params"],
            metric=data.get("metric"),
            direction=data.get("direction"),
            algorithm=data.get("algorithm") or "bayesian",
            selection=data.get("measurement_selection") or "last",
            source=source,
        )
    sweeper = _sweeper_block(data)
    if sweeper is None:
        raise SearchSpaceError(
            f"{source}: no search space found: expected top-level 'params' (search-space file) or "
            f"'hydra.sweeper.params' (Hydra config), see docs/search-space.md"
        )
    if sweeper.get("custom_search_space") is not None:
        raise SearchSpaceError(
            f"{source}: hydra.sweeper.custom_search_space "
            f"({sweeper['custom_search_space']!r}) is not supported: Vertex AI needs the whole "
            f"space up front, not a function that calls trial.suggest_*; write each parameter "
            f"under hydra.sweeper.params in Hydra's sweep grammar (interval, int(interval), "
            f"tag(log, ...), range, choice), and a conditional one in a search-space file as "
            f"{{values: ..., when: {{parent: [values]}}}} (see docs/search-space.md)"
        )
    metric = sweeper.get("metric")
    if metric is None:
        metric = data.get("optimized_metric")
    return _build(
        params=sweeper.get("params"),
        metric=metric,
        direction=sweeper.get("direction"),
        algorithm=sweeper.get("algorithm") or sampler_algorithm(sweeper.get("sampler"))[1],
        selection=sweeper.get("measurement_selection") or "last",
        source=f"{source} (hydra.sweeper)",
    )


def _expression(p: Param) -> str:
    """Sweep grammar for a parameter that has no source text (one read from a StudySpec)."""
    tag = (lambda inner: f"tag({p.scale}, {inner})") if p.scale != "linear" else (lambda i: i)
    if p.kind == "DOUBLE":
        return tag(f"interval({float(cast(float, p.low))!r}, {float(cast(float, p.high))!r})")
    if p.kind == "INTEGER":
        return tag(f"int(interval({p.low}, {p.high}))")
    values = ", ".join(repr(v) if not isinstance(v, str) else _quoted(v) for v in p.values)
    return tag(f"choice({values})")


def _quoted(text: str) -> str:
    from hydra_vertex.overrides import quote_string

    return quote_string(text)


#: hydra-optuna-sweeper keys read as the Vertex equivalents (``SweeperSettings``) or noted.
_SWEEPER_KEYS = {
    "_target_", "params", "direction", "metric", "algorithm", "measurement_selection",
    "n_trials", "n_jobs", "max_failure_rate", "sampler", "storage", "study_name",
    "custom_search_space",
}


@dataclass(frozen=True)
class SweeperSettings:
    """What a ``hydra.sweeper`` block asks for besides the space (hydra-optuna-sweeper's keys).

    ``n_trials``/``n_jobs``/``max_failure_rate`` become the job's budget when the job file does not
    set it (:func:`hydra_vertex.jobfile.apply_sweeper`); ``notes`` holds one warning line per key
    that is ignored, saying what is used instead.
    """

    n_trials: int | None = None
    n_jobs: int | None = None
    max_failure_rate: float | None = None
    seed: int | None = None  # the sampler's: the local suggestion engine's seed
    source: str = ""
    notes: tuple[str, ...] = ()


def sweeper_settings(data: Any, source: str = "<search space>") -> SweeperSettings:
    """The budget and the ignored keys of a Hydra config's ``hydra.sweeper`` block (nothing for a
    search-space file). ``null`` means "not set" everywhere."""
    sweeper = _sweeper_block(data) if isinstance(data, Mapping) and "params" not in data else None
    if sweeper is None:
        return SweeperSettings(source=source)
    where = f"{source} (hydra.sweeper)"

    def count(key: str) -> int | None:
        value = sweeper.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SearchSpaceError(f"{where}: '{key}' must be an integer >= 1, got {value!r}")
        return value

    rate = sweeper.get("max_failure_rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1
    ):
        raise SearchSpaceError(
            f"{where}: 'max_failure_rate' must be a number from 0 to 1, got {rate!r}"
        )
    notes = []
    sampler = sweeper.get("sampler")
    if sampler is not None and sweeper.get("algorithm"):
        notes.append(
            f"{where}: 'sampler' is ignored: 'algorithm: {sweeper['algorithm']}' chooses how "
            f"Vertex AI picks the trials"
        )
    elif sampler is not None:
        name, algorithm = sampler_algorithm(sampler)
        if algorithm == "bayesian":
            notes.append(
                f"{where}: 'sampler' is ignored ({name or 'set'}): Vertex AI chooses the "
                f"trials by Bayesian optimization (Vizier; locally, Optuna's GPSampler); the "
                f"random and grid samplers map to Vertex's random and grid search"
            )
    for key in ("storage", "study_name"):
        if sweeper.get(key) is not None:
            notes.append(
                f"{where}: '{key}' is ignored: the trials are kept in the Vertex AI tuning job "
                f"(locally, in the emulator's state directory), and SUMMARY.json lists them"
            )
    for key in sorted(set(sweeper) - _SWEEPER_KEYS):
        if sweeper.get(key) is not None:
            notes.append(f"{where}: '{key}' is not read by hydra-vertex and is ignored")
    seed = sampler.get("seed") if isinstance(sampler, Mapping) else None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SearchSpaceError(f"{where}: 'sampler.seed' must be an integer >= 0, got {seed!r}")
    return SweeperSettings(
        n_trials=count("n_trials"),
        n_jobs=count("n_jobs"),
        max_failure_rate=None if rate is None else float(rate),
        seed=seed,
        source=where,
        notes=tuple(notes),
    )


#: hydra-optuna-sweeper's sampler options (``hydra/sweeper/sampler``) and Optuna's sampler
#: classes, by the Vertex algorithm that stands in for them: random and grid search are Vertex's
#: own; every other sampler becomes Vertex's default, Bayesian optimization.
_SAMPLER_NAMES = {
    "TPESampler": "tpe", "RandomSampler": "random", "GridSampler": "grid", "GPSampler": "gp",
    "CmaEsSampler": "cmaes", "NSGAIISampler": "nsgaii", "NSGAIIISampler": "nsgaiii",
    "MOTPESampler": "motpe", "raise_motpe_removed": "motpe", "QMCSampler": "qmc",
    "BruteForceSampler": "bruteforce",
}
_SAMPLER_ALGORITHMS: dict[str, Algorithm] = {"random": "random", "grid": "grid"}


def sampler_algorithm(sampler: Any) -> tuple[str, Algorithm]:
    """``(option name, Vertex algorithm)`` for a hydra-optuna-sweeper ``sampler`` setting: an
    option name (``tpe``) or a config with Optuna's ``_target_``; ``("", "bayesian")`` for none."""
    if sampler is None:
        return "", "bayesian"
    target = sampler.get("_target_") if isinstance(sampler, Mapping) else sampler
    text = str(target or "")
    name = _SAMPLER_NAMES.get(text.rsplit(".", 1)[-1], text.rsplit(".", 1)[-1].lower())
    return name, _SAMPLER_ALGORITHMS.get(name, "bayesian")


def _sweeper_block(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if "hydra.sweeper" in data and isinstance(data["hydra.sweeper"], Mapping):
        return cast(Mapping[str, Any], data["hydra.sweeper"])
    hydra = data.get("hydra")
    if isinstance(hydra, Mapping) and isinstance(hydra.get("sweeper"), Mapping):
        return cast(Mapping[str, Any], hydra["sweeper"])
    return None


def _build(
    *,
    params: Any,
    metric: Any,
    direction: Any,
    algorithm: Any,
    selection: Any,
    source: str,
) -> SearchSpace:
    objectives = _objectives(metric, direction, source)
    if not isinstance(algorithm, str) or algorithm.lower() not in _ALGORITHMS:
        raise SearchSpaceError(
            f"{source}: 'algorithm' must be one of {list(_ALGORITHMS)}, got {algorithm!r}"
        )
    if not isinstance(selection, str) or selection.lower() not in _SELECTIONS:
        raise SearchSpaceError(
            f"{source}: 'measurement_selection' must be one of {list(_SELECTIONS)}, "
            f"got {selection!r}"
        )
    if not isinstance(params, Mapping) or not params:
        raise SearchSpaceError(
            f"{source}: 'params' must be a non-empty mapping of Hydra key -> sweep expression, "
            f"got {params!r}"
        )
    parsed = [_parse_entry(str(k), v, source) for k, v in params.items()]
    ordered = _order_parents_first(parsed, source)
    kinds = {p.key: p.kind for p in ordered}
    ordered = [  # conditions on a CATEGORICAL parent name its category strings
        replace(p, parent_values=tuple(category_string(v) for v in p.parent_values))
        if p.parent is not None and kinds.get(p.parent) == "CATEGORICAL"
        else p
        for p in ordered
    ]
    return SearchSpace(
        metric=objectives[0][0],
        direction=objectives[0][1],
        more_metrics=tuple(objectives[1:]),
        params=tuple(ordered),
        algorithm=cast(Algorithm, algorithm.lower()),
        measurement_selection=cast(MeasurementSelection, selection.lower()),
        source=source,
    )


def _objectives(metric: Any, direction: Any, source: str) -> list[tuple[str, Direction]]:
    """``(metric, direction)`` per objective from a space's ``metric`` and ``direction``: one of
    each, or lists of the same length, or a list of directions with no metric (the objectives are
    then :func:`objective_names`, matched by position)."""
    in_sweeper = source.endswith("(hydra.sweeper)")
    if isinstance(direction, list | tuple) and len(direction) == 1:
        direction = direction[0]
    directions = list(direction) if isinstance(direction, list | tuple) else [direction]
    if direction is None or not directions:
        raise SearchSpaceError(
            f"{source}: 'direction' is missing; it must be one of {list(_DIRECTIONS)} (or a "
            f"list of them, one per metric)"
        )
    for d in directions:
        if not isinstance(d, str) or d.lower() not in _DIRECTIONS:
            raise SearchSpaceError(
                f"{source}: 'direction' must be one of {list(_DIRECTIONS)} (or a list of them, "
                f"one per metric), got {direction!r}"
            )
    if isinstance(metric, list | tuple) and len(metric) == 1 and len(directions) == 1:
        metric = metric[0]
    if (metric is None or metric == "") and len(directions) > 1:
        metric = objective_names(len(directions))
    if metric is None or metric == "":
        raise SearchSpaceError(
            f"{source}: 'metric' is missing: name the metric the app reports (the tag its value "
            f"is reported under; for a task function that returns a mapping, its key), e.g. "
            f"'metric: val_loss'"
            + (" (in a Hydra config: hydra.sweeper.metric, or a top-level optimized_metric)"
               if in_sweeper else "")
        )
    metrics = list(metric) if isinstance(metric, list | tuple) else [metric]
    if len(metrics) != len(directions):
        raise SearchSpaceError(
            f"{source}: 'metric' and 'direction' must list as many entries (one direction per "
            f"metric, in order), got metric={metric!r} and direction={direction!r}"
        )
    for m in metrics:
        if not isinstance(m, str) or not m or any(c.isspace() for c in m):
            raise SearchSpaceError(
                f"{source}: 'metric' must be a metric tag without whitespace (or a list of "
                f"them), got {metric!r}"
            )
    return [(m, cast(Direction, d.lower())) for m, d in zip(metrics, directions, strict=True)]


def check_entry(raw_key: str, spec: Any, where: str) -> Param:
    """One entry of ``params`` parsed and checked on its own, every error starting with ``where``
    (the sweeper names it ``hydra.sweeper.params.<key>``). Rules between entries (conditions,
    duplicates, grid search over intervals) are checked when the whole space is built."""
    param = _parse_entry(raw_key, spec, where=where)
    _validate_param(param, "", where=where)
    return param


def _parse_entry(raw_key: str, spec: Any, source: str = "", where: str = "") -> Param:
    where = where or f"{source}: parameter {raw_key!r}"
    if raw_key.startswith("++"):
        raise SearchSpaceError(
            f"{where}: '++' (add or override) cannot be tuned: a trial sets a key the config has "
            f"('key') or adds one it lacks ('+key'); write one of those"
        )
    if raw_key.startswith("~"):
        raise SearchSpaceError(f"{where}: '~' deletes a key, which is not a value to tune")
    new_key = raw_key.startswith("+")
    key = raw_key[1:] if new_key else raw_key
    _check_key(key, where)  # before Hydra's parser, whose message for "a b=..." is obscure
    parent: str | None = None
    parent_values: tuple[Primitive, ...] = ()
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"values", "when"})
        if unknown or "values" not in spec:
            raise SearchSpaceError(
                f"{where}: a conditional parameter is a mapping with 'values' (a sweep expression) "
                f"and 'when' ({{parent_key: [parent values]}}), got keys {sorted(spec)}"
            )
        when = spec.get("when")
        if not isinstance(when, Mapping) or len(when) != 1:
            raise SearchSpaceError(
                f"{where}: 'when' must name exactly one parent, as {{parent_key: [values]}}, "
                f"got {when!r}"
            )
        (parent_raw, pvals), = when.items()
        parent = str(parent_raw).lstrip("+")
        pvals_list = list(pvals) if isinstance(pvals, list | tuple) else [pvals]
        if not pvals_list:
            raise SearchSpaceError(f"{where}: 'when' lists no values of parent {parent!r}")
        parent_values = tuple(cast(Primitive, v) for v in pvals_list)
        spec = spec["values"]
    if isinstance(spec, bool) or not isinstance(spec, str | int | float):
        raise SearchSpaceError(
            f"{where}: expected a sweep expression such as 'interval(0, 1)' or 'choice(a, b)', "
            f"got {spec!r}"
        )
    expression = str(spec)
    param = _parse_expression(key, expression, where)
    return replace(param, new_key=new_key, parent=parent, parent_values=parent_values)


def _parse_expression(key: str, expression: str, where: str) -> Param:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_override(f"{key}={expression}")
        value = override.value()
    except HydraException as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SearchSpaceError(
            f"{where}: cannot parse {expression!r} with Hydra's sweep grammar ({msg}); "
            f"use interval, int(interval), tag(log, ...), range or choice"
        ) from None

    tags = set(getattr(value, "tags", set()) or set())
    unknown_tags = sorted(tags - set(_KNOWN_TAGS))
    if unknown_tags:
        raise SearchSpaceError(
            f"{where}: unknown tag(s) {unknown_tags} in {expression!r}; known tags are "
            f"{sorted(_KNOWN_TAGS)}"
        )
    if len(tags) > 1:
        raise SearchSpaceError(
            f"{where}: {expression!r} has tags {sorted(tags)}; use at most one of log, reverse_log"
        )
    scale = cast(Scale, _KNOWN_TAGS[next(iter(tags))] if tags else "linear")
    base: dict[str, Any] = {"key": key, "expression": expression, "scale": scale}

    if isinstance(value, IntervalSweep):
        if getattr(value, "shuffle", False):
            raise SearchSpaceError(f"{where}: shuffle() has no meaning in a search space")
        start, end = value.start, value.end
        is_int = isinstance(start, int) and isinstance(end, int)
        return Param(kind="INTEGER" if is_int else "DOUBLE", low=start, high=end, **base)
    if isinstance(value, RangeSweep):
        values = _range_values(value, where)
        return _numeric_choice(values, base, where)
    if isinstance(value, ChoiceSweep):
        if value.shuffle:
            raise SearchSpaceError(f"{where}: shuffle() has no meaning in a search space")
        items = list(value.list)
        for item in items:
            if isinstance(item, dict | list) or item is None:
                raise SearchSpaceError(
                    f"{where}: choice values must be strings or numbers, got {item!r} "
                    f"in {expression!r}"
                )
        if items and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in items
        ):
            return _numeric_choice([cast(int | float, v) for v in items], base, where)
        if scale != "linear":
            raise SearchSpaceError(
                f"{where}: tag({scale}) applies to numeric parameters, not to the categories "
                f"of {expression!r}"
            )
        return Param(kind="CATEGORICAL", values=tuple(cast(Primitive, v) for v in items), **base)
    raise SearchSpaceError(
        f"{where}: {expression!r} is a fixed value, not a sweep; tune it with interval, range or "
        f"choice, or set it in the app's config"
    )


def _range_values(sweep: Any, where: str) -> list[int | float]:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    if step == 0:
        raise SearchSpaceError(f"{where}: range step must not be 0")
    if (stop - start) / step > MAX_DISCRETE_VALUES:
        raise SearchSpaceError(
            f"{where}: range({start}, {stop}, {step}) has more than {MAX_DISCRETE_VALUES} values "
            f"(the Vertex limit for DISCRETE parameters); use interval() instead"
        )
    values: list[int | float] = []
    i = 0
    while True:
        v = start + i * step
        if (step > 0 and v >= stop) or (step < 0 and v <= stop):
            break
        values.append(v if isinstance(v, int) else round(v, 12))
        i += 1
    if not values:
        raise SearchSpaceError(f"{where}: range({start}, {stop}, {step}) is empty")
    return values


def _numeric_choice(values: list[int | float], base: dict[str, Any], where: str) -> Param:
    if all(isinstance(v, int) for v in values):
        ints = sorted(cast(list[int], values))
        exact = len(ints) > 1 and ints == list(range(ints[0], ints[-1] + 1))
        if exact:
            return Param(kind="INTEGER", low=ints[0], high=ints[-1], **base)
        return Param(kind="DISCRETE", values=tuple(ints), **base)
    floats = tuple(sorted(float(v) for v in values))
    return Param(kind="DISCRETE", values=floats, **base)


def _order_parents_first(params: list[Param], source: str) -> list[Param]:
    by_key: dict[str, Param] = {}
    for p in params:
        if p.key in by_key:
            raise SearchSpaceError(f"{source}: parameter {p.key!r} is declared twice")
        by_key[p.key] = p
    ordered: list[Param] = []
    placed: set[str] = set()

    def place(p: Param, trail: tuple[str, ...]) -> None:
        if p.key in placed:
            return
        if p.key in trail:
            raise SearchSpaceError(
                f"{source}: conditional parameters form a cycle: {' -> '.join((*trail, p.key))}"
            )
        if p.parent is not None:
            if p.parent not in by_key:
                raise SearchSpaceError(
                    f"{source}: parameter {p.key!r} is conditional on {p.parent!r}, which is not a "
                    f"declared parameter; declared: {sorted(by_key)}"
                )
            place(by_key[p.parent], (*trail, p.key))
        ordered.append(p)
        placed.add(p.key)

    for p in params:
        place(p, ())
    # Depth first: each parent directly followed by its children (the StudySpec nesting order).
    dfs: list[Param] = []

    def visit(parent: str | None) -> None:
        for p in ordered:
            if p.parent == parent:
                dfs.append(p)
                visit(p.key)

    visit(None)
    return dfs


# ------------------------------------------------------------------------------------------------
# Validation (every rule, with the values echoed)
# ------------------------------------------------------------------------------------------------

_ID_RE = re.compile(r"\s")
_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")


def _validate_space(space: SearchSpace) -> None:
    src = space.source or "search space"
    for metric, direction in space.objectives:
        if not isinstance(metric, str) or "\x00" in metric:
            raise SearchSpaceError(
                f"{src}: 'metric' must be a metric tag (a string without NUL characters), got "
                f"{metric!r}"[:300]
            )
        if direction not in _DIRECTIONS:
            raise SearchSpaceError(
                f"{src}: direction must be one of {list(_DIRECTIONS)}, got {direction!r} "
                f"(metric {metric!r})"
            )
    dupes = sorted({m for m in space.metrics if space.metrics.count(m) > 1})
    if dupes:
        raise SearchSpaceError(
            f"{src}: each metric is one objective, but {dupes} appear more than once in "
            f"{list(space.metrics)}"
        )
    if not space.params:
        raise SearchSpaceError(f"{src}: a search space needs at least one parameter")
    seen: dict[str, Param] = {}
    for p in space.params:
        _validate_param(p, src)
        if p.parameter_id in seen:
            raise SearchSpaceError(
                f"{src}: parameter id {p.parameter_id!r} is declared twice (parameter ids must be "
                f"unique across the whole space, conditional children included)"
            )
        if p.parent is not None:
            parent = seen.get(p.parent)
            if parent is None:
                raise SearchSpaceError(
                    f"{src}: parameter {p.key!r} is conditional on {p.parent!r}, which is not "
                    f"declared before it"
                )
            _validate_condition(p, parent, src)
        seen[p.parameter_id] = p
    if space.algorithm == "grid":
        doubles = [p.key for p in space.params if p.kind == "DOUBLE"]
        if doubles:
            raise SearchSpaceError(
                f"{src}: grid search needs INTEGER, CATEGORICAL or DISCRETE parameters, but "
                f"{doubles} are DOUBLE (interval); use range() or choice() for them"
            )


def _check_key(key: str, where: str) -> None:
    """The keys the shim can honour: a config key, or a config group at the top of the tree."""
    if not key or _ID_RE.search(key):
        raise SearchSpaceError(f"{where}: parameter ids must be non-empty with no whitespace")
    if "/" in key:
        raise SearchSpaceError(
            f"{where}: a nested config-group path ('/') cannot be a trial parameter (Vertex "
            f"parameter ids and the shim take config keys and top-level groups); tune the values "
            f"inside the group ('{key.replace('/', '.')}.x') or select the option with a "
            f"top-level group"
        )
    if "@" in key:
        raise SearchSpaceError(
            f"{where}: a package override ('@') cannot be a trial parameter; tune the key it "
            f"reaches, written as a dotted config key"
        )
    first = key.split(".", 1)[0]
    if first == "hydra":
        raise SearchSpaceError(
            f"{where}: 'hydra.*' keys configure Hydra itself and cannot be tuned"
        )
    if first == "_global_":
        raise SearchSpaceError(
            f"{where}: '_global_' is a package name, not a key; write the key it reaches "
            f"(and 'hydra.*' keys cannot be tuned)"
        )
    if not _KEY_RE.fullmatch(key):
        raise SearchSpaceError(
            f"{where}: a parameter is a dotted config key (letters, digits, '_' and '-' between "
            f"dots, as 'optimizer.lr' or 'layers.0.size'); {key!r} is not one"
        )


def _validate_param(p: Param, src: str, where: str = "") -> None:
    where = where or f"{src}: parameter {p.key!r}"
    _check_key(p.key, where)
    if p.kind in ("DOUBLE", "INTEGER"):
        if p.low is None or p.high is None:
            raise SearchSpaceError(f"{where}: {p.kind} needs min and max")
        for bound in (p.low, p.high):
            if isinstance(bound, float) and not math.isfinite(bound):
                raise SearchSpaceError(f"{where}: bounds must be finite, got {bound!r}")
        if p.low > p.high:
            raise SearchSpaceError(
                f"{where}: min <= max must hold, but got (min={p.low!r}, max={p.high!r})"
            )
        if p.scale != "linear" and p.low <= 0:
            raise SearchSpaceError(
                f"{where}: a {p.scale} scale needs a strictly positive range (min > 0), but got "
                f"(min={p.low!r}, max={p.high!r})"
            )
    elif p.kind == "DISCRETE":
        _validate_discrete(p.values, where, p.scale)
    elif p.kind == "CATEGORICAL":
        if not p.values:
            raise SearchSpaceError(f"{where}: a CATEGORICAL parameter needs at least one category")
        cats = p.categories
        dupes = sorted({c for c in cats if cats.count(c) > 1})
        if dupes:
            raise SearchSpaceError(
                f"{where}: categories must be unique, but {dupes} appear more than once in "
                f"{list(cats)}"
            )
        if p.scale != "linear":
            raise SearchSpaceError(f"{where}: scale {p.scale!r} does not apply to CATEGORICAL")
        nul = [c for c in cats if "\x00" in c]
        if nul:
            raise SearchSpaceError(
                f"{where}: categories cannot hold a NUL character (a trial's command line cannot "
                f"carry it), but {nul[0]!r} does"[:300]
            )
        unencodable = [c for c in cats if not _utf8(c)]
        if unencodable:
            raise SearchSpaceError(
                f"{where}: categories must be valid Unicode text (Vertex sends them as UTF-8), but "
                f"{unencodable[0]!r} holds a lone surrogate"[:300]
            )
    else:
        raise SearchSpaceError(f"{where}: unknown parameter type {p.kind!r}")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _validate_discrete(values: Sequence[Any], where: str, scale: str = "linear") -> None:
    if not values:
        raise SearchSpaceError(f"{where}: a DISCRETE parameter needs at least one value")
    if len(values) > MAX_DISCRETE_VALUES:
        raise SearchSpaceError(
            f"{where}: a DISCRETE parameter has at most {MAX_DISCRETE_VALUES} values, got "
            f"{len(values)}"
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SearchSpaceError(f"{where}: DISCRETE values must be finite numbers, got {v!r}")
    for a, b in itertools.pairwise(values):
        if a == b:
            raise SearchSpaceError(f"{where}: DISCRETE values must be unique, but {a!r} repeats")
        if a > b:
            raise SearchSpaceError(
                f"{where}: DISCRETE values must be in increasing order, but {a!r} comes before "
                f"{b!r} in {list(values)}"
            )
        if b - a < MIN_DISCRETE_GAP:
            raise SearchSpaceError(
                f"{where}: DISCRETE values must be at least {MIN_DISCRETE_GAP} apart, but {a!r} "
                f"and {b!r} are closer"
            )
    if scale != "linear" and values[0] <= 0:
        raise SearchSpaceError(
            f"{where}: a {scale} scale needs strictly positive values, but got min={values[0]!r}"
        )


def _validate_condition(child: Param, parent: Param, src: str) -> None:
    where = f"{src}: parameter {child.key!r}"
    if parent.kind == "DOUBLE":
        raise SearchSpaceError(
            f"{where}: conditional parameters need an INTEGER, CATEGORICAL or DISCRETE parent, but "
            f"{parent.key!r} is DOUBLE ({parent.expression or 'interval'})"
        )
    if not child.parent_values:
        raise SearchSpaceError(f"{where}: 'when' lists no values of parent {parent.key!r}")
    for v in child.parent_values:
        if not _in_space(parent, v):
            raise SearchSpaceError(
                f"{where}: 'when' value {v!r} is outside the space of parent {parent.key!r} "
                f"({_describe(parent)})"
            )


def _in_space(p: Param, v: Any) -> bool:
    if p.kind == "CATEGORICAL":
        return category_string(v) in p.categories
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    if p.kind == "INTEGER":
        assert p.low is not None and p.high is not None  # validated above
        return float(v).is_integer() and p.low <= v <= p.high
    return any(abs(float(v) - float(x)) < MIN_DISCRETE_GAP for x in p.values)


def _describe(p: Param) -> str:
    if p.kind == "CATEGORICAL":
        return f"categories {list(p.categories)}"
    if p.kind == "DISCRETE":
        return f"values {list(p.values)}"
    return f"{p.kind} from {p.low} to {p.high}"


# ------------------------------------------------------------------------------------------------
# Cache for the shim (Hydra's parser costs ~200 ms per start)
# ------------------------------------------------------------------------------------------------


def cache_dir(kind: str = "spaces") -> Path:
    """hydra-vertex's cache of ``kind``: parsed ``spaces`` in ``$HYDRA_VERTEX_CACHE_DIR`` itself,
    anything else in a directory of that name beside them; else under
    ``~/.cache/hydra-vertex/`` (``$XDG_CACHE_HOME`` honoured)."""
    explicit = os.environ.get("HYDRA_VERTEX_CACHE_DIR")
    if explicit:
        return Path(explicit) if kind == "spaces" else Path(explicit) / kind
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hydra-vertex" / kind


def load_cached(path: str | os.PathLike[str]) -> SearchSpace:
    """:func:`load`, memoised on disk by the file's content hash (safe across edits)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        why = e.strerror if isinstance(e, OSError) else str(e)
        raise SearchSpaceError(f"cannot read search-space file {str(p)!r}: {why}") from None
    import hashlib  # here: the shim's inline (--search-space-json) path needs no hashing

    digest = hashlib.sha256(raw).hexdigest()
    cache = cache_dir() / f"{digest}-v{SCHEMA_VERSION}.json"
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        return replace(SearchSpace.from_dict(data), source=str(p))
    except (OSError, ValueError, KeyError, TypeError, SearchSpaceError):
        pass
    space = load(p)
    try:
        from hydra_vertex.files import atomic_write_text

        atomic_write_text(cache, json.dumps(space.to_dict()))
    except OSError:
        pass  # a read-only home is fine: we just parse again next time
    return space


def load_json(text: str, source: str = "<json>") -> SearchSpace:
    """A space from ``SearchSpace.to_dict()`` as JSON (no Hydra import: the shim's fast path)."""
    try:
        data = json.loads(text)
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        return replace(SearchSpace.from_dict(data), source=source)
    except SearchSpaceError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise SearchSpaceError(
            f"{source}: not a compiled search space (SearchSpace.to_dict() as JSON): {e}"
        ) from None
