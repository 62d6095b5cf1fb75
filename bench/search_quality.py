"""A. Search quality on a simulated clock: objectives evaluated in process, trial durations drawn
from a log-normal, so asynchronous completions interleave as they do with real trials.

Methods (all read the same Hydra sweep-grammar search space, ``problems.PROBLEMS[...]["params"]``):

- ``random``: the emulator's RANDOM_SEARCH engine (Optuna ``RandomSampler``).
- ``tpe_sequential``: Optuna's ``TPESampler`` with its defaults, one trial at a time.
- ``sync_batch``: hydra-optuna-sweeper's own loop and default sampler, in its own environment
  (``_sweeper_sync.py``): ask ``n_jobs`` (2) trials, wait for all, tell, repeat.
- ``hydra_vertex`` / ``hydra_vertex_p4``: ``hydra_vertex.emulator.suggester.suggest`` exactly as
  the emulator's tuning runner calls it: default (Bayesian) algorithm, the job seed, the job's
  budget (``max_trial_count``), asynchronous with 2 (4) parallel slots, every trial passed in id
  order with running ones as pending; a slot is refilled the moment a trial ends on the simulated
  clock.

Budgets: values are kept in the order the trials were asked. For the methods that do not know the
budget, the first ``b`` values of one ``n_trials`` run are exactly the trials a ``b``-trial job
would have run (a suggestion depends only on what happened before it was asked; the simulated
durations are fixed per seed). ``hydra_vertex`` knows its budget (it exploits as the budget ends),
so it runs once per budget: a ``b``-trial job for each budget ``b`` (``collect``'s ``short``
runs). Its curve for budget ``b`` is that job's trials followed by the ``n_trials`` job's trials
after ``b`` (used only when it has not reached a target within ``b``).

Figures per problem, method and budget ``b`` (paired over seeds: the same seed for every method):

- ``regret_ratio_vs_random_at[b]``: the median over seeds of (best - optimum) / (random's best -
  optimum) after ``b`` trials, with a bootstrap 95% interval of that median (seeds resampled);
- ``log_efficiency_vs_random_at[b]``: Vizier's log-efficiency score against random search (its
  ``LogEfficiencyConvergenceCurveComparator``, on median curves): ``ln(n_random / n_method)``, where
  ``n_x`` is the number of trials the median best-so-far curve of ``x`` needs to reach random
  search's median best after ``b`` trials. ``+0.69`` means half the trials. A method that does not
  reach it within ``n_trials`` counts ``n_trials + 1`` (so its score is an upper bound). Paired
  bootstrap interval: seeds resampled jointly for both curves.
"""

from __future__ import annotations

import heapq
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import problems

METHODS = ("random", "tpe_sequential", "sync_batch", "hydra_vertex", "hydra_vertex_p4")
BUDGETS = (10, 20, 50)
SIGMA = 0.5  # log-normal sigma of simulated trial durations
BOOTSTRAP = 2000
# method -> parallel slots of the emulator's runner loop (None: not run through it)
_PARALLEL = {"hydra_vertex": 2, "hydra_vertex_p4": 4}


def study_spec(problem: str, algorithm: str = "bayesian") -> Any:
    from hydra_vertex.search_space import from_mapping

    mapping = {
        "metric": "value",
        "direction": "minimize",
        "algorithm": algorithm,
        "params": problems.PROBLEMS[problem]["params"],
    }
    return from_mapping(mapping).to_study_spec()


def run_async(
    problem: str, seed: int, n_trials: int, parallel: int, algorithm: str, budget: bool = True
) -> list[float]:
    """The emulator's runner loop on a simulated clock; values in the order trials were asked.
    ``budget``: the suggester is told the job's ``max_trial_count`` (``n_trials``), as the
    emulator's runner tells it."""
    past = _run_async(problem, seed, n_trials, parallel, algorithm, budget)
    return [float(t.value) for t in past]  # type: ignore[arg-type]


def _run_async(
    problem: str, seed: int, n_trials: int, parallel: int, algorithm: str, budget: bool = True
) -> list[Any]:
    from hydra_vertex.emulator.suggester import PastTrial, suggest

    spec = study_spec(problem, algorithm)
    durs = problems.durations(problem, seed, n_trials, SIGMA)
    past: list[PastTrial] = []
    running: list[tuple[float, int]] = []
    clock = 0.0
    while len(past) < n_trials or running:
        while len(running) < parallel and len(past) < n_trials:
            params = suggest(spec, past, seed=seed, budget=n_trials if budget else None)
            assert params is not None
            heapq.heappush(running, (clock + durs[len(past)], len(past)))
            past.append(PastTrial(params, None, pending=True))
        clock, idx = heapq.heappop(running)
        value = problems.evaluate(problem, past[idx].parameters)
        past[idx] = PastTrial(past[idx].parameters, value, pending=False)
    return past


def run_tpe(problem: str, seed: int, n_trials: int) -> list[float]:
    import optuna

    from hydra_vertex.emulator import suggester

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tree = suggester._tree(suggester._space(study_spec(problem)))
    dists = {n.pid: suggester._distribution(n.param) for n in tree}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    values = []
    for _ in range(n_trials):
        trial = study.ask(fixed_distributions=dists)
        value = problems.evaluate(problem, trial.params)
        study.tell(trial, value)
        values.append(value)
    return values


def _one(args: tuple[str, str, int, int, int]) -> tuple[str, str, int, list[float]]:
    method, problem, seed, n_trials, parallel = args
    if method in _PARALLEL:
        values = run_async(problem, seed, n_trials, parallel, "bayesian")
    elif method == "random":
        values = run_async(problem, seed, n_trials, parallel, "random")
    else:
        values = run_tpe(problem, seed, n_trials)
    return method, problem, seed, values


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


Values = dict[str, dict[str, dict[int, list[float]]]]  # [problem][method][seed] -> values
Short = dict[str, dict[str, dict[int, dict[int, list[float]]]]]  # [problem][method][budget][seed]


def collect(
    problem_names: list[str],
    seeds: list[int],
    n_trials: int,
    parallel: int,
    sweeper_py: Path | None,
    workers: int = 2,
    budgets: tuple[int, ...] = BUDGETS,
) -> tuple[Values, Short]:
    """``values[problem][method][seed]``: objective values in the order the trials were asked,
    ``n_trials`` long; ``short[problem][method][budget][seed]``: the budget-aware methods' jobs
    of each smaller budget.

    ``parallel`` is the slots of ``hydra_vertex`` and of the sweeper's batches; ``hydra_vertex_p4``
    runs 4."""
    from concurrent.futures import ProcessPoolExecutor

    out: Values = {p: {m: {} for m in METHODS} for p in problem_names}
    short: Short = {p: {m: {} for m in _PARALLEL} for p in problem_names}
    slots = {**_PARALLEL, "hydra_vertex": parallel}
    smaller = [b for b in budgets if b < n_trials]
    jobs = [
        (m, p, s, n, slots.get(m, parallel))
        for m in ("hydra_vertex", "hydra_vertex_p4", "random", "tpe_sequential")
        for n in ([n_trials, *smaller] if m in _PARALLEL else [n_trials])
        for p in problem_names
        for s in seeds
    ]
    sync_proc = None
    if sweeper_py is not None:
        req = {
            "runs": [[p, s] for p in problem_names for s in seeds],
            "n_trials": n_trials,
            "n_jobs": parallel,
            "sigma": SIGMA,
        }
        sync_proc = subprocess.Popen(
            [str(sweeper_py), str(Path(__file__).parent / "_sweeper_sync.py"), json.dumps(req)],
            stdout=subprocess.PIPE,
            text=True,
        )
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        for method, problem, seed, values in pool.map(_one, jobs):
            if len(values) == n_trials:
                out[problem][method][seed] = values
            else:
                short[problem][method].setdefault(len(values), {})[seed] = values
    if sync_proc is not None:
        stdout, _ = sync_proc.communicate()
        if sync_proc.returncode != 0:
            raise RuntimeError("sync_batch (the sweeper's environment) failed")
        runs = [(p, s) for p in problem_names for s in seeds]
        for (p, s), res in zip(runs, json.loads(stdout), strict=True):
            out[p]["sync_batch"][s] = res["values"]
    return out, short


def ask_ms(problem: str, n_past: int = 50, parallel: int = 2, repeats: int = 5) -> dict[str, float]:
    """Median wall and CPU time (ms) of one Bayesian ask with ``n_past`` trials of a
    ``hydra_vertex`` run, ``parallel - 1`` of them running: the runner's ask late in a job, the
    larger of a job that goes on (a global ask) and one at its end (the exploitation phase). The
    CPU time tells the engine's cost apart from waiting for a core on a shared machine."""
    from hydra_vertex.emulator.suggester import PastTrial, suggest

    spec = study_spec(problem)
    past = _run_async(problem, 0, n_past, parallel, "bayesian")
    for i in range(n_past - (parallel - 1), n_past):
        past[i] = PastTrial(past[i].parameters, None, pending=True)
    out = {"wall": 0.0, "cpu": 0.0}
    for budget in (None, n_past + 1):
        wall, cpu = [], []
        for r in range(repeats + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            suggest(spec, past, seed=r, budget=budget)
            if r:  # the first ask pays the imports
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        out["wall"] = max(out["wall"], 1000 * statistics.median(wall))
        out["cpu"] = max(out["cpu"], 1000 * statistics.median(cpu))
    return out


def _traces(runs: dict[int, list[float]], seeds: list[int], horizon: int) -> Any:
    """[seeds x horizon] best-so-far values (a short run keeps its last best)."""
    import numpy as np

    rows = []
    for s in seeds:
        trace = np.minimum.accumulate(np.asarray(runs[s], dtype=float))
        rows.append(np.concatenate([trace, np.full(horizon - len(trace), trace[-1])]))
    return np.vstack(rows)


def _first_reach(curves: Any, targets: Any, horizon: int) -> Any:
    """Per row: trials (1-based) until the curve is <= its target; horizon + 1 if never."""
    import numpy as np

    hit = curves <= targets[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, horizon + 1)


def _interval(samples: Any) -> list[float]:
    import numpy as np

    lo, hi = np.percentile(samples, [2.5, 97.5])
    return [float(lo), float(hi)]


def _at_budget(
    runs: dict[int, list[float]], short: dict[int, dict[int, list[float]]], budget: int
) -> dict[int, list[float]]:
    """A method's runs as seen by a ``budget``-trial job: its own job of that budget when it ran
    one (budget-aware methods), followed by the longest job's trials after ``budget``."""
    if budget not in short:
        return runs
    return {s: [*short[budget][s], *v[budget:]] for s, v in runs.items()}


def summarize(
    values: Values,
    budgets: tuple[int, ...] = BUDGETS,
    seed: int = 0,
    short: Short | None = None,
) -> dict[str, Any]:
    """Per problem and method: the figures of the module docstring, plus trials to reach random
    search's final median and the paired log-ratio of regrets at the largest budget.
    ``short``: the budget-aware methods' jobs of smaller budgets (see ``collect``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {}
    for problem, by_method in values.items():
        opt = problems.optimum(problem)
        seeds = sorted(by_method["random"])
        horizon = max(len(v) for runs in by_method.values() for v in runs.values())
        budgets_here = tuple(b for b in budgets if b <= horizon) or (horizon,)
        top = budgets_here[-1]
        idx = rng.integers(0, len(seeds), size=(BOOTSTRAP, len(seeds)))  # paired resamples
        base = _traces(by_method["random"], seeds, horizon)
        base_regret = np.maximum(base - opt, 0.0)
        # regrets can be 0 on a finite table: a small floor keeps ratios and logs finite
        floor = max(1e-3 * float(np.median(base_regret[:, top - 1])), 1e-12)
        base_median = np.median(base, axis=0)
        base_boot = np.median(base[idx], axis=1)  # [BOOTSTRAP x horizon]
        rand_final = float(base_median[top - 1])
        result[problem] = {"optimum": opt, "random_final_median": rand_final}
        for method, runs in by_method.items():
            if not runs:
                continue
            own = (short or {}).get(problem, {}).get(method, {})
            ratio_at: dict[str, float] = {}
            ratio_ci: dict[str, list[float]] = {}
            eff_at: dict[str, float] = {}
            eff_ci: dict[str, list[float]] = {}
            regret_at: dict[str, float] = {}
            for b in budgets_here:
                curves = _traces(_at_budget(runs, own, b), seeds, horizon)
                regret = np.maximum(curves - opt, 0.0)
                curve_boot = np.median(curves[idx], axis=1)
                ratios = (regret[:, b - 1] + floor) / (base_regret[:, b - 1] + floor)
                ratio_at[str(b)] = float(np.median(ratios))
                ratio_ci[str(b)] = _interval(np.median(ratios[idx], axis=1))
                regret_at[str(b)] = float(np.median(regret[:, b - 1]))
                eff_at[str(b)] = _log_efficiency(
                    base_median[None, :], np.median(curves, axis=0)[None, :], b, horizon
                )[0]
                eff_ci[str(b)] = _interval(_log_efficiency(base_boot, curve_boot, b, horizon))
            hits = _first_reach(curves, np.full(len(seeds), rand_final), horizon)
            ttt = float(np.median(hits))
            logs = np.log((regret[:, top - 1] + floor) / (base_regret[:, top - 1] + floor))
            result[problem][method] = {
                "regret_ratio_vs_random": ratio_at[str(top)],
                "regret_ratio_vs_random_at": ratio_at,
                "regret_ratio_ci95_at": ratio_ci,
                "log_efficiency_vs_random_at": eff_at,
                "log_efficiency_ci95_at": eff_ci,
                "median_regret_at": regret_at,
                "median_regret": regret_at[str(top)],
                "trials_to_target": None if ttt > horizon else ttt,
                "log_ratio_mean": float(np.mean(logs)),
                "log_ratio_ci95": _interval(np.mean(logs[idx], axis=1)),
                "seeds": len(seeds),
            }
    return result


def _log_efficiency(base: Any, curves: Any, budget: int, horizon: int) -> list[float]:
    """Row-wise ln(n_base / n_curve) to reach base's value after ``budget`` trials."""
    import numpy as np

    target = base[:, budget - 1]
    n_base = _first_reach(base, target, horizon)
    n_curve = _first_reach(curves, target, horizon)
    return [float(x) for x in np.log(n_base / n_curve)]


def bench_asks(problem_names: list[str], n_past: int) -> dict[str, dict[str, float]]:
    """``ask_ms`` per problem (in the main process, after the pool: nothing else of ours runs)."""
    return {p: ask_ms(p, n_past) for p in problem_names}
