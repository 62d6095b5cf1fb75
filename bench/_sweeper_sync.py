"""``sync_batch`` for the search-quality benchmark, run inside the sweeper's own environment
(hydra-optuna-sweeper pins Optuna < 3): hydra-optuna-sweeper's own loop and default sampler.

    python _sweeper_sync.py '{"runs": [[problem, seed], ...], "n_trials": 50, "n_jobs": 2}'

The search space goes through the sweeper's own parser (``create_params_from_overrides``), the
sampler is its default ``TPESamplerConfig`` (seed set), and each batch asks ``n_jobs`` trials,
evaluates them all, then tells them, as ``OptunaSweeperImpl.sweep`` does. Prints JSON: per run the
values in the order the trials were asked and the simulated wall time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import optuna
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from hydra_plugins.hydra_optuna_sweeper.config import TPESamplerConfig
from omegaconf import OmegaConf

import problems


def run(problem: str, seed: int, n_trials: int, n_jobs: int, sigma: float) -> dict[str, object]:
    params = problems.PROBLEMS[problem]["params"]
    dists, fixed = create_params_from_overrides([f"{k}={v}" for k, v in params.items()])
    assert not fixed
    sampler = instantiate(OmegaConf.structured(TPESamplerConfig(seed=seed)))
    study = optuna.create_study(sampler=sampler, direction="minimize")
    durs = problems.durations(problem, seed, n_trials, sigma)
    values: list[float] = []
    clock = 0.0
    done = 0
    while done < n_trials:
        batch = min(n_jobs, n_trials - done)
        trials = [study.ask() for _ in range(batch)]
        results = []
        for i, trial in enumerate(trials):
            for name, dist in dists.items():
                trial._suggest(name, dist)
            results.append((durs[done + i], problems.evaluate(problem, dict(trial.params))))
        for trial, (_, value) in zip(trials, results, strict=True):
            study.tell(trial=trial, state=optuna.trial.TrialState.COMPLETE, values=[value])
        values.extend(v for _, v in results)  # in the order asked
        clock += max(d for d, _ in results)  # the batch waits for its slowest trial
        done += batch
    return {"values": values, "sim_wall": clock}


def main() -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    req = json.loads(sys.argv[1])
    out = [run(p, s, req["n_trials"], req["n_jobs"], req.get("sigma", 0.5)) for p, s in req["runs"]]
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
