"""Trial suggestions with Optuna, rebuilt from the stored trials on every call (stateless).

The one model of the parameters is :meth:`hydra_vertex.search_space.SearchSpace.from_study_spec`;
the goals come from the StudySpec's metrics (``StudySpec.MetricSpec.GoalType``).

- ALGORITHM_UNSPECIFIED (Vertex's Bayesian default), built for budgets of 10-30 trials:

  1. a space-filling start: scrambled Sobol points from Optuna's ``QMCSampler`` (seeded by the job
     seed), ``d + 1`` of them for ``d`` parameters, fewer when the space holds few points
     (:func:`startup_trials`);
  2. then a model, chosen from the space (:func:`model_for`):

     - ``GPSampler`` (Matern-5/2 with ARD; integers and DISCRETE values are searched on their grid
       of values, categories with their own kernel; log expected improvement) when the numeric
       parameters are at least half of the space and no parameter is conditional;
     - ``TPESampler`` (multivariate, grouped: one density per branch of a conditional space) when
       categorical or conditional parameters are the majority, where a GP's one kernel over
       every category and its random draws for conditional children fall behind TPE.

  3. when the runner tells it the job's budget (``max_trial_count``), a local phase for the GP:
     the last 35% of the budget (once the global phase has had ``2 d`` model trials) searches a
     box of 0.3 of each numeric parameter's range around the best trial so far, still fitting the
     GP on every trial (:func:`_local_from`). Left global, Optuna's GP spends a small budget's last
     trials on the box's edges, where its variance is largest. Branin, 16 trials, 2 in parallel,
     on the runner's simulated loop: within 0.5 of the optimum on 58 of seeds 0-59 with the local
     phase, on 11 of seeds 0-19 without.

  The GP's acquisition optimizer runs 5 local searches instead of Optuna's 10 (the same 39 of 40
  on Branin, a third less CPU per ask). Running trials enter the study as RUNNING: the GP then
  maximises the batch (q-)log expected improvement given the running points (Optuna's own pending
  handling), TPE applies its constant liar. A constant liar for the GP (running trials told the
  mean, or the best, observed value; measured before the local phase) asked faster (35 ms against
  80-220 ms at 50 trials on Branin) but searched worse: Branin within 0.5 at 16 trials on 12
  (mean) or 15 (best) of 40 seeds against 23, Hartmann-6 regret ratio at 20 trials 0.77 or 0.80
  against 0.55. Monotone output warping (log of the distance to the best value, as
  Vizier does) keeps heavy-tailed objectives from dominating the GP's fit; comparisons, and so the
  optimum, are unchanged.
- RANDOM_SEARCH: ``RandomSampler``.
- GRID_SEARCH: the cartesian product of the (INTEGER, CATEGORICAL, DISCRETE) values, taken in order,
  skipping every point already asked; ``None`` when exhausted.

Several objectives (engine part; the runner and the search space file wire them later): a StudySpec
with several ``metrics`` asks for a Pareto front. ``PastTrial.value`` is then a sequence of floats,
one per metric in the StudySpec's metric order, each optimised in its metric's goal (MINIMIZE or
MAXIMIZE). The start is the same QMC start; the model is ``GPSampler``'s log expected hypervolume
improvement (q-batch with running trials) on numeric spaces and multi-objective TPE on the others
(NSGA-II needs generations of tens of trials: too many for these budgets). No output warping with
several objectives. A trial with a missing or non-finite objective is left out, as an infeasible
trial is.

Determinism: parameters are visited in ``parameter_id`` order (children too), so the same seed gives
the same trials whatever order the spec lists them in (a pipeline's search_space travels as an
unordered struct). Each ask is seeded from the job seed and the number of trials so far, so a
rebuilt study does not replay the same random draws.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud.aiplatform_v1.types import StudySpec

    from hydra_vertex.search_space import Param, SearchSpace

Value = float | str
Objective = float | Sequence[float]
Model = Literal["gp", "tpe"]
Direction = Literal["minimize", "maximize"]
# Output warping offset, as a fraction of the observed spread. Regret ratio vs random at 20 trials,
# 2 parallel, Hartmann-6 over 40 seeds: 0.1 -> 0.69, 0.2 -> 0.55, 0.3 -> 0.59, 1.0 -> 0.63, no
# warping 0.70. Branin, 16 trials, 2 parallel, 40 seeds, within 0.5 of the optimum: 0.1 -> 22,
# 0.2 -> 23, 0.3 -> 19; at 20 trials no warping loses Branin (ratio 0.45 vs 0.06 with 0.3).
WARP_OFFSET = 0.2
# Random draws tried when the model proposes a point already taken (common on small grids).
RANDOM_ATTEMPTS = 50
# QMC points tried before the start falls back to random draws on a small, mostly taken grid.
QMC_ATTEMPTS = 64
# The local phase as the budget ends (see _local_from). Branin, 16 trials, 2 parallel, seeds 20-59,
# within 0.5 of the optimum: no local phase 23 of 40 (11 of 20 on seeds 0-19); the last 25% of the
# budget local 34, 35% 39, 50% 36; side 0.2 instead of 0.3 (35%) 34. Hartmann-6 at 20 trials lost
# to a local phase of 35% (median gap 1.10 against 0.93, 20 seeds) and gained at 50 (0.12 against
# 0.28, 16 seeds): the phase waits for LOCAL_AFTER_D model trials per parameter first.
LOCAL_FRACTION = 0.35
LOCAL_SIDE = 0.3
LOCAL_AFTER_D = 2
# GPSampler's acquisition optimizer (its private attributes; defaults 2048 and 10): QMC candidates
# and local searches from the best of them. Fewer ask faster at the same quality (see ask_ms).
GP_PRELIMINARY_SAMPLES = 2048
GP_LOCAL_SEARCHES = 5


@dataclass
class PastTrial:
    """One trial as the suggester sees it.

    ``value``: the final measurement, or one per metric (in the StudySpec's metric order) when the
    spec has several metrics; None while pending or when infeasible.
    """

    parameters: dict[str, Value]
    value: Objective | None
    pending: bool = False


# ------------------------------------------------------------------------------------------------
# The space: SearchSpace's parameters, sorted by id, as Optuna distributions
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    param: Param
    children: tuple[_Node, ...]

    @property
    def pid(self) -> str:
        return self.param.parameter_id


def _space(study_spec: StudySpec) -> SearchSpace:
    """The StudySpec's parameters through the project's one model of them.

    ``SearchSpace`` carries one metric; the parameters do not depend on the metrics, so a spec with
    several (or none) is read with its first metric (or a placeholder) in their place.
    """
    from google.cloud.aiplatform_v1.types import StudySpec

    from hydra_vertex.search_space import SearchSpace

    if len(study_spec.metrics) == 1:
        return SearchSpace.from_study_spec(study_spec)
    pb = type(StudySpec.pb(study_spec))()
    pb.CopyFrom(StudySpec.pb(study_spec))
    if pb.metrics:
        del pb.metrics[1:]
    else:
        pb.metrics.add(metric_id="value", goal=int(StudySpec.MetricSpec.GoalType.MINIMIZE))
    return SearchSpace.from_study_spec(StudySpec.wrap(pb))


def _tree(space: SearchSpace) -> tuple[_Node, ...]:
    def nodes(parent: str | None) -> tuple[_Node, ...]:
        kids = sorted(space.children(parent), key=lambda p: p.parameter_id)
        return tuple(_Node(p, nodes(p.key)) for p in kids)

    return nodes(None)


def _walk(nodes: Sequence[_Node]) -> list[_Node]:
    out: list[_Node] = []
    for n in nodes:
        out.append(n)
        out.extend(_walk(n.children))
    return out


def _objectives(study_spec: StudySpec) -> list[tuple[str, Direction]]:
    """(metric_id, Optuna direction) per metric, in the spec's order (one to minimize if none)."""
    from google.cloud.aiplatform_v1.types import StudySpec

    maximize = StudySpec.MetricSpec.GoalType.MAXIMIZE
    return [
        (m.metric_id, "maximize" if m.goal == maximize else "minimize")
        for m in study_spec.metrics
    ] or [("value", "minimize")]


def _distribution(p: Param) -> Any:
    import optuna.distributions as d

    if p.kind == "DOUBLE":
        # reverse log: z log-uniform on [low, high], x = low + high - z (dense near high)
        return d.FloatDistribution(float(p.low), float(p.high), log=p.scale != "linear")
    if p.kind == "INTEGER":
        return d.IntDistribution(int(p.low), int(p.high), log=p.scale == "log")
    if p.kind == "CATEGORICAL":
        return d.CategoricalDistribution(list(p.categories))
    return d.IntDistribution(0, len(p.values) - 1)  # DISCRETE: ordered index


def _to_internal(p: Param, value: Value) -> Any:
    if p.kind == "DOUBLE":
        low, high = float(p.low), float(p.high)
        v = float(value)
        if p.scale == "reverse_log":
            v = low + high - v
        return min(max(v, low), high)
    if p.kind == "INTEGER":
        return round(float(value))
    if p.kind == "CATEGORICAL":
        return str(value)
    v = float(value)
    return min(range(len(p.values)), key=lambda i: abs(float(p.values[i]) - v))


def _from_internal(p: Param, value: Any) -> Value:
    if p.kind == "DOUBLE":
        low, high = float(p.low), float(p.high)
        v = float(value)
        v = low + high - v if p.scale == "reverse_log" else v
        return min(max(v, low), high)  # low + high - z can round past a bound
    if p.kind == "INTEGER":
        return float(int(value))
    if p.kind == "CATEGORICAL":
        return str(value)
    return float(p.values[int(value)])


def _matches(parent: Param, value: Value, cond: tuple[Any, ...]) -> bool:
    if parent.kind == "CATEGORICAL":
        return str(value) in cond
    return any(math.isclose(float(value), float(c)) for c in cond)


def _visit_active(tree: Sequence[_Node], value_of: Callable[[_Node], Value | None]) -> None:
    """Visit the active parameters, parents first: a child when its parent's value meets its
    condition. ``value_of`` gives (or chooses) each visited parameter's value; None stops there."""

    def visit(node: _Node) -> None:
        value = value_of(node)
        if value is None:
            return
        for child in node.children:
            if _matches(node.param, value, child.param.parent_values):
                visit(child)

    for n in tree:
        visit(n)


def _active(tree: Sequence[_Node], params: dict[str, Value]) -> list[_Node]:
    """The parameters active for a trial (parents, then children whose condition holds)."""
    out: list[_Node] = []

    def value_of(node: _Node) -> Value | None:
        if node.pid in params:
            out.append(node)
        return params.get(node.pid)

    _visit_active(tree, value_of)
    return out


def _cardinality(tree: Sequence[_Node]) -> float:
    """How many distinct points the space holds (inf with a DOUBLE parameter)."""

    def one(node: _Node) -> float:
        p = node.param
        if p.kind == "DOUBLE":
            return math.inf
        if p.kind == "INTEGER":  # counted, not listed: a range may hold 2**53 values
            size = float(int(p.high) - int(p.low) + 1)
            conditions = {
                float(c)
                for child in node.children
                for c in child.param.parent_values
                if float(c).is_integer() and int(p.low) <= float(c) <= int(p.high)
            }
            return size - len(conditions) + sum(_branches(node, v, one) for v in conditions)
        values: list[Value] = (
            list(p.categories) if p.kind == "CATEGORICAL" else [float(v) for v in p.values]
        )
        return sum(_branches(node, v, one) for v in values)

    return math.prod(one(n) for n in tree)


def _branches(node: _Node, value: Value, one: Callable[[_Node], float]) -> float:
    """How many points the subtree under ``node`` holds when it takes ``value``."""
    sub = 1.0
    for child in node.children:
        if _matches(node.param, value, child.param.parent_values):
            sub *= one(child)
    return sub


def grid_size(study_spec: StudySpec) -> float:
    """How many points a GRID_SEARCH over the space enumerates (inf with a DOUBLE)."""
    return _cardinality(_tree(_space(study_spec)))


# ------------------------------------------------------------------------------------------------
# Policy: how many space-filling points, which model
# ------------------------------------------------------------------------------------------------


def startup_trials(study_spec: StudySpec) -> int:
    """How many space-filling (QMC) trials open a Bayesian study: ``d + 1`` for ``d`` parameters,
    at most a quarter of the space's points (at least 2) when it holds few."""
    tree = _tree(_space(study_spec))
    return _startup(tree)


def _startup(tree: Sequence[_Node]) -> int:
    d = len(_walk(tree))
    card = _cardinality(tree)
    return max(2, min(d + 1, math.ceil(card / 4))) if math.isfinite(card) else d + 1


def model_for(study_spec: StudySpec) -> Model:
    """``gp`` or ``tpe`` for a Bayesian study (see the module docstring for the rule)."""
    return _model(_tree(_space(study_spec)))


def _model(tree: Sequence[_Node]) -> Model:
    nodes = _walk(tree)
    if any(n.children for n in nodes):
        return "tpe"
    categorical = sum(1 for n in nodes if n.param.kind == "CATEGORICAL")
    return "tpe" if 2 * categorical > len(nodes) else "gp"


# ------------------------------------------------------------------------------------------------
# suggest
# ------------------------------------------------------------------------------------------------


def suggest(
    study_spec: StudySpec,
    past: list[PastTrial],
    seed: int | None = None,
    budget: int | None = None,
) -> dict[str, Value] | None:
    """The next trial's parameters (Vertex ``parameter_id`` -> value), or None when exhausted."""
    space = _space(study_spec)
    tree = _tree(space)
    if space.algorithm == "grid":
        return _grid_next(tree, past)
    optuna = _optuna()
    metrics = _objectives(study_spec)
    directions = [d for _, d in metrics]
    base_seed = 0 if seed is None else int(seed)
    round_seed = (base_seed * 1_000_003 + len(past)) % (2**31)
    taken = {_key(t.parameters) for t in past}
    if space.algorithm == "random":
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=round_seed))
        return _ask_untaken(optuna, study, tree, taken, round_seed)
    done = [v for t in past if not t.pending and (v := _values(t.value, metrics))]
    if len(past) < _startup(tree) or len(done) < 2:
        return _qmc_next(optuna, tree, past, taken, base_seed, round_seed)
    model = _model(tree)
    region = None
    local = budget is not None and len(past) >= _local_from(tree, budget)
    if model == "gp" and len(directions) == 1 and local:
        region = _region(tree, past, metrics)
    study = optuna.create_study(
        directions=directions, sampler=_sampler(optuna, model, round_seed, region)
    )
    warp = (
        _warping([v[0] for v in done], directions[0] == "maximize")
        if len(directions) == 1
        else _identity
    )
    for t in past:
        active = _active(tree, t.parameters)
        params = {n.pid: _to_internal(n.param, t.parameters[n.pid]) for n in active}
        dists = {n.pid: _distribution(n.param) for n in active}
        if t.pending:
            state = optuna.trial.TrialState.RUNNING
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=dists, state=state)
            )
            continue
        values = _values(t.value, metrics)
        if values is None:
            continue  # infeasible trials carry no information for these samplers
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dists, values=[warp(values[0]), *values[1:]]
            )
        )
    if model == "gp":
        with _ONE_TORCH_THREAD:
            return _ask_untaken(optuna, study, tree, taken, round_seed)
    return _ask_untaken(optuna, study, tree, taken, round_seed)


def _optuna() -> Any:
    """Optuna, quiet: its per-study log lines and the ExperimentalWarning of the two options used
    here (``QMCSampler``, TPE's ``group``) would repeat on every ask. (Set on every call: a
    ``catch_warnings`` block elsewhere, pytest's for one, restores the filters it found.)"""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for message in ("QMCSampler is experimental", "Argument ``group`` is an experimental"):
        warnings.filterwarnings(
            "ignore", message=message, category=optuna.exceptions.ExperimentalWarning
        )
    return optuna


def _sampler(optuna: Any, model: Model, seed: int, region: dict[str, Any] | None = None) -> Any:
    if model == "gp":
        gp = (optuna.samplers.GPSampler if region is None else _local_gp(optuna, region))(
            seed=seed,
            n_startup_trials=0,  # the QMC start is ours: the GP starts on the first model ask
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False,
        )
        gp._n_preliminary_samples = GP_PRELIMINARY_SAMPLES
        gp._n_local_search = GP_LOCAL_SEARCHES
        return gp
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=0,
        multivariate=True,
        group=True,
        constant_liar=True,
    )


def _local_gp(optuna: Any, region: dict[str, Any]) -> Any:
    """``GPSampler`` that searches ``region`` (narrowed distributions by parameter id): its search
    space, and so the box it normalises to and optimises the acquisition in, is the region's. The GP
    is still fit on every trial (Optuna's normalisation does not clip, so trials outside the region
    lie outside the unit box and still inform it)."""

    class _LocalGP(optuna.samplers.GPSampler):
        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            space = super().infer_relative_search_space(study, trial)
            return {k: region.get(k, d) for k, d in space.items()}

    return _LocalGP


def _local_from(tree: Sequence[_Node], budget: int) -> int:
    """From which trial on a budget-aware GP searches locally, around the best trial so far: the
    last ``LOCAL_FRACTION`` of the budget, once the global phase has had ``LOCAL_AFTER_D`` model
    trials per parameter after the start (a ``budget``-trial job asks trials ``0 .. budget-1``).

    Optuna's GP, left global to the end of a small budget, keeps probing the box's edges where its
    variance is largest (Branin's 16-trial jobs sat at (10, 3), 1.55 from the optimum, on half the
    seeds); narrowing the box it searches spends the last trials refining the best basin found."""
    d = len(_walk(tree))
    return max(budget - math.ceil(LOCAL_FRACTION * budget), _startup(tree) + LOCAL_AFTER_D * d)


def _region(
    tree: Sequence[_Node], past: list[PastTrial], metrics: list[tuple[str, Direction]]
) -> dict[str, Any]:
    """The numeric root parameters' distributions narrowed to ``LOCAL_SIDE`` of their range (of
    their log when log-scaled) around the best finished trial; categories stay whole."""
    sign = -1.0 if metrics[0][1] == "maximize" else 1.0
    best: PastTrial | None = None
    best_v = math.inf
    for t in past:
        v = None if t.pending else _values(t.value, metrics)
        if v is not None and sign * v[0] < best_v:
            best, best_v = t, sign * v[0]
    assert best is not None  # suggest asks a model only with two finished trials
    return {
        n.pid: _narrow(_distribution(n.param), _to_internal(n.param, best.parameters[n.pid]))
        for n in tree
        if n.pid in best.parameters and n.param.kind != "CATEGORICAL"
    }


def _narrow(dist: Any, x: float) -> Any:
    """``dist`` (Float or Int) cut to ``LOCAL_SIDE`` of its range centred on ``x``, clipped to its
    bounds; an integer range keeps at least two values."""
    import optuna.distributions as d

    f: Callable[[float], float] = math.log if dist.log else float
    lo, hi, c = f(dist.low), f(dist.high), f(x)
    half = 0.5 * LOCAL_SIDE * (hi - lo)
    a, b = max(lo, c - half), min(hi, c + half)
    if dist.log:
        a, b = math.exp(a), math.exp(b)
    a, b = max(dist.low, a), min(dist.high, b)
    if isinstance(dist, d.FloatDistribution):
        return d.FloatDistribution(a, b, log=dist.log)
    ia, ib = math.floor(a), math.ceil(b)
    if ia == ib:
        ib, ia = (ib + 1, ia) if ib < dist.high else (ib, ia - 1)
    return d.IntDistribution(ia, ib, log=dist.log)


def _values(value: Objective | None, metrics: list[tuple[str, Direction]]) -> list[float] | None:
    """The objective(s) as one float per metric, or None when there is nothing to learn from
    (pending, infeasible, or a non-finite value)."""
    if value is None:
        return None
    values = [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) != len(metrics):
        raise ValueError(
            f"PastTrial.value has {len(values)} value(s) for {len(metrics)} metrics "
            f"{[m for m, _ in metrics]}: give one per metric, in the StudySpec's metric order"
        )
    return values if all(math.isfinite(v) for v in values) else None


def _qmc_next(
    optuna: Any,
    tree: Sequence[_Node],
    past: list[PastTrial],
    taken: set[tuple[tuple[str, str], ...]],
    base_seed: int,
    round_seed: int,
) -> dict[str, Value]:
    """The next untaken point of the job's scrambled Sobol sequence (roots; children at random).

    ``QMCSampler`` numbers its points in the study it samples for; this throwaway study replays the
    sequence up to the trials already asked (the first ask of a study is drawn at random and
    dropped, as QMCSampler leaves it to its independent sampler), so the sequence depends only on
    the job seed.
    """
    sampler = optuna.samplers.QMCSampler(
        qmc_type="sobol",
        scramble=True,
        seed=base_seed % (2**31),
        independent_sampler=optuna.samplers.RandomSampler(seed=round_seed),
        warn_independent_sampling=False,
    )
    study = optuna.create_study(sampler=sampler)
    roots = {n.pid: _distribution(n.param) for n in tree}
    study.ask(fixed_distributions=roots)  # QMCSampler's first ask is not from the sequence
    for _ in range(len(past)):
        study.ask(fixed_distributions=roots)
    for _ in range(QMC_ATTEMPTS):
        trial = study.ask(fixed_distributions=roots)
        chosen = _complete(trial, tree)
        if _key(chosen) not in taken:
            return chosen
    random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=round_seed))
    return _ask_untaken(optuna, random, tree, taken, round_seed)


def _complete(trial: Any, tree: Sequence[_Node]) -> dict[str, Value]:
    """Ask every active parameter of ``trial`` (parents first) and return the Vertex values."""
    chosen: dict[str, Value] = {}

    def value_of(node: _Node) -> Value:
        chosen[node.pid] = _from_internal(node.param, _ask_one(trial, node.param))
        return chosen[node.pid]

    _visit_active(tree, value_of)
    return chosen


def _ask_untaken(
    optuna: Any,
    study: Any,
    tree: Sequence[_Node],
    taken: set[tuple[tuple[str, str], ...]],
    round_seed: int,
) -> dict[str, Value]:
    """The model's point; when it is taken already (common on integer/categorical grids), random
    draws instead: asking the model again costs a full fit and returns the same point."""
    trial = study.ask()
    chosen = _complete(trial, tree)
    if _key(chosen) not in taken:
        return chosen
    random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=round_seed + 1))
    for _ in range(RANDOM_ATTEMPTS):
        chosen = _complete(random.ask(), tree)
        if _key(chosen) not in taken:
            return chosen
    return chosen


def _ask_one(trial: Any, p: Param) -> Any:
    dist = _distribution(p)
    pid = p.parameter_id
    if p.kind == "CATEGORICAL":
        return trial.suggest_categorical(pid, list(dist.choices))
    if p.kind == "DOUBLE":
        return trial.suggest_float(pid, dist.low, dist.high, log=dist.log)
    return trial.suggest_int(pid, dist.low, dist.high, log=dist.log)


class _OneTorchThread:
    """While any GP ask runs, torch uses one intra-op thread (process-wide; restored after).

    The GP's tensors are tiny (one row per trial), so extra threads only add synchronisation, and
    on a machine whose cores run the trials they fight the trials for CPU: on 2 loaded cores a
    40-trial ask took 370 ms on average with torch's default 2 threads, 70 ms with one. (Optuna's
    GP does the same inside each fit, but saves and restores the count per call, which races when
    two jobs ask at once; this counts its users.) The BLAS libraries under NumPy and SciPy
    (OpenBLAS) get one thread too, through threadpoolctl: on 2 loaded cores a 50-trial Branin ask
    took 680 ms (260 ms CPU) with their default threads, 107 ms (55 ms CPU) with one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0
        self._blas: Any = None
        self._pools: Any = None

    def _controller(self) -> Any:
        """threadpoolctl's view of the loaded thread pools, made once (it scans the process's
        shared libraries: 12 ms); the BLAS libraries are loaded by the GP's imports before."""
        if self._pools is None:
            from threadpoolctl import ThreadpoolController

            self._pools = ThreadpoolController()
        return self._pools

    def __enter__(self) -> None:
        import torch

        with self._lock:
            if self._users == 0:
                self._saved = torch.get_num_threads()
                torch.set_num_threads(1)
                self._blas = self._controller().limit(limits=1, user_api="blas")
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        import torch

        with self._lock:
            self._users -= 1
            if self._users == 0 and self._saved > 0:
                torch.set_num_threads(self._saved)
                if self._blas is not None:
                    self._blas.restore_original_limits()
                    self._blas = None


_ONE_TORCH_THREAD = _OneTorchThread()


def warm_up(study_spec: StudySpec) -> None:
    """Import what ``suggest`` will need (Optuna; for the GP also its torch backend), so that the
    first model ask, after the space-filling start, does not pay seconds of imports while a worker
    slot waits. Safe to call from a background thread; errors surface in ``suggest``."""
    try:
        import optuna
        import scipy.stats.qmc  # noqa: F401  (the QMC start)

        space = _space(study_spec)
        if space.algorithm == "bayesian" and _model(_tree(space)) == "gp":
            import optuna._gp.gp
            import torch  # noqa: F401
        del optuna
    except Exception:  # pragma: no cover - suggest reports it
        return


def _identity(v: float) -> float:
    return v


def _warping(values: list[float], maximize: bool) -> Callable[[float], float]:
    """A monotone output warping (as Vizier does): log of the distance to the worst value.

    Heavy-tailed objectives (Branin spans 0.4 to 300) otherwise make the GP chase the boundaries;
    a monotone map keeps every comparison, so the optimum is unchanged.
    """
    if len(values) < 2:
        return _identity
    best = max(values) if maximize else min(values)
    c = max(abs(max(values) - min(values)), 1e-12) * WARP_OFFSET
    if maximize:
        return lambda v: -math.log(max(best - v, 0.0) + c)
    return lambda v: math.log(max(v - best, 0.0) + c)


def _key(params: dict[str, Value]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((k, repr(float(v)) if not isinstance(v, str) else v) for k, v in params.items())
    )


# ------------------------------------------------------------------------------------------------
# GRID_SEARCH
# ------------------------------------------------------------------------------------------------


def _grid_values(p: Param) -> list[Value]:
    if p.kind == "INTEGER":
        return [float(v) for v in range(int(p.low), int(p.high) + 1)]
    if p.kind == "CATEGORICAL":
        return list(p.categories)
    if p.kind == "DISCRETE":
        return [float(v) for v in p.values]
    raise ValueError(f"GRID_SEARCH cannot enumerate DOUBLE parameter {p.parameter_id!r}")


def _grid_points(tree: Sequence[_Node]) -> list[dict[str, Value]]:
    points: list[dict[str, Value]] = [{}]
    for node in tree:
        points = [{**p, **sub} for p in points for sub in _grid_points_one(node)]
    return points


def _grid_points_one(node: _Node) -> list[dict[str, Value]]:
    out: list[dict[str, Value]] = []
    for v in _grid_values(node.param):
        subs: list[dict[str, Value]] = [{node.pid: v}]
        for child in node.children:
            if _matches(node.param, v, child.param.parent_values):
                subs = [{**s, **c} for s in subs for c in _grid_points_one(child)]
        out.extend(subs)
    return out


def _grid_next(tree: Sequence[_Node], past: list[PastTrial]) -> dict[str, Value] | None:
    taken = {_key(t.parameters) for t in past}
    for point in _grid_points(tree):
        if _key(point) not in taken:
            return point
    return None


def parameter_kinds(study_spec: StudySpec) -> dict[str, str]:
    """``parameter_id`` -> DOUBLE/INTEGER/CATEGORICAL/DISCRETE, conditional children included."""
    return {p.parameter_id: p.kind for p in _space(study_spec).params}


__all__ = [
    "PastTrial",
    "grid_size",
    "model_for",
    "parameter_kinds",
    "startup_trials",
    "suggest",
    "warm_up",
]
