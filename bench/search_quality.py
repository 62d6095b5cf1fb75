"""A. Search quality on a simulated clock: objectives evaluated in process, trial durations drawn
from a log-normal, so asynchronous completions interleave as they do with real trials.

Methods (all read the same Hydra sweep-grammar search space, ``problems.PROBLEMS[...]["params"]``):

- ``random``: the emulator's RANDOM_SEARCH engine (Optuna ``RandomSampler``).
- ``tpe_sequential``: Optuna's ``TPESampler`` with its defaults, one trial at a time.
- ``sync_batch``: hydra-optuna-sweeper's own loop and default sampler, in its own environment
  (``_sweeper_sync.py``): ask ``n_jobs`` trials, wait for all, tell, repeat.
- ``hydra_vertex``: ``hydra_vertex.emulator.suggester.suggest`` exactly as the emulator's tuning
  runner calls it: default (Bayesian) algorithm, the job seed, asynchronous with ``parallel`` slots,
  every trial passed in id order with running ones as pending; a slot is refilled the moment a trial
  ends on the simulated clock.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import problems

METHODS = ("random", "tpe_sequential", "sync_batch", "hydra_vertex")
SIGMA = 0.5  # log-normal sigma of simulated trial durations


def study_spec(problem: str, algorithm: str = "bayesian") -> Any:
    from hydra_vertex.search_space import from_mapping

    mapping = {
        "metric": "value",
        "direction": "minimize",
        "algorithm": algorithm,
        "params": problems.PROBLEMS[problem]["params"],
    }
    return from_mapping(mapping).to_study_spec()


def run_async(problem: str, seed: int, n_trials: int, parallel: int, algorithm: str) -> list[float]:
    """The emulator's runner loop on a simulated clock; values in completion order."""
    from hydra_vertex.emulator.suggester import PastTrial, suggest

    spec = study_spec(problem, algorithm)
    durs = problems.durations(problem, seed, n_trials, SIGMA)
    past: list[PastTrial] = []
    running: list[tuple[float, int]] = []
    clock = 0.0
    values: list[float] = []
    while len(past) < n_trials or running:
        while len(running) < parallel and len(past) < n_trials:
            params = suggest(spec, past, seed=seed)
            assert params is not None
            heapq.heappush(running, (clock + durs[len(past)], len(past)))
            past.append(PastTrial(params, None, pending=True))
        clock, idx = heapq.heappop(running)
        value = problems.evaluate(problem, past[idx].parameters)
        past[idx] = PastTrial(past[idx].parameters, value, pending=False)
        values.append(value)
    return values


def run_tpe(problem: str, seed: int, n_trials: int) -> list[float]:
    import optuna

    from hydra_vertex.emulator import suggester

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    specs = suggester._specs(study_spec(problem))
    dists = {s.pid: suggester._distributions(s) for s in specs}
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
    if method == "hydra_vertex":
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


def collect(
    problem_names: list[str],
    seeds: list[int],
    n_trials: int,
    parallel: int,
    sweeper_py: Path | None,
    workers: int = 2,
) -> dict[str, dict[str, dict[int, list[float]]]]:
    """values[problem][method][seed] -> objective values in completion order."""
    from concurrent.futures import ProcessPoolExecutor

    out: dict[str, dict[str, dict[int, list[float]]]] = {
        p: {m: {} for m in METHODS} for p in problem_names
    }
    jobs = [
        (m, p, s, n_trials, parallel)
        for m in ("hydra_vertex", "random", "tpe_sequential")
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
            out[problem][method][seed] = values
    if sync_proc is not None:
        stdout, _ = sync_proc.communicate()
        if sync_proc.returncode != 0:
            raise RuntimeError("sync_batch (the sweeper's environment) failed")
        runs = [(p, s) for p in problem_names for s in seeds]
        for (p, s), res in zip(runs, json.loads(stdout), strict=True):
            out[p]["sync_batch"][s] = res["values"]
    return out


def _best_trace(values: list[float]) -> list[float]:
    best, trace = math.inf, []
    for v in values:
        best = min(best, v)
        trace.append(best)
    return trace


def _bootstrap_ci(xs: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(xs, k=len(xs))) for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


def summarize(values: dict[str, dict[str, dict[int, list[float]]]]) -> dict[str, Any]:
    """Per problem and method: regret ratio vs random (median over seeds of the paired ratio),
    trials to reach random search's final median, paired log-ratio mean with a bootstrap 95% CI."""
    result: dict[str, Any] = {}
    for problem, by_method in values.items():
        opt = problems.optimum(problem)
        regrets = {
            m: {s: max(min(v) - opt, 0.0) for s, v in runs.items()}
            for m, runs in by_method.items()
            if runs
        }
        seeds = sorted(regrets["random"])
        rand_final = statistics.median(min(by_method["random"][s]) for s in seeds)
        # regrets can be 0 on a finite table: a small floor keeps ratios and logs finite
        floor = max(1e-3 * statistics.median(regrets["random"].values()), 1e-12)
        result[problem] = {"optimum": opt, "random_final_median": rand_final}
        for method, reg in regrets.items():
            ratios = [(reg[s] + floor) / (regrets["random"][s] + floor) for s in seeds]
            logs = [math.log(r) for r in ratios]
            hits = []
            for s in seeds:
                trace = _best_trace(by_method[method][s])
                hit = next((i + 1 for i, b in enumerate(trace) if b <= rand_final), None)
                hits.append(math.inf if hit is None else hit)
            ttt = statistics.median(hits)
            lo, hi = _bootstrap_ci(logs)
            result[problem][method] = {
                "regret_ratio_vs_random": statistics.median(ratios),
                "median_regret": statistics.median(reg.values()),
                "trials_to_target": None if math.isinf(ttt) else ttt,
                "log_ratio_mean": statistics.fmean(logs),
                "log_ratio_ci95": [lo, hi],
                "seeds": len(seeds),
            }
    return result
