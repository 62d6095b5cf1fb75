"""The ``best_trial`` step: read the finished job, pick the winner, write every trial."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from hydra_vertex import retries
from hydra_vertex.search_space import SearchSpace
from hydra_vertex.steps import common
from hydra_vertex.steps.tune import load_space
from hydra_vertex.trials import BestTrial, best_trial, typed_parameters


def read_job(location: str, job_name: str) -> Any:
    client = common.job_client(location)
    return retries.call(
        lambda: client.get_hyperparameter_tuning_job(name=job_name), f"get {job_name}"
    )


def pick(
    *,
    location: str,
    tuning_job: str,
    search_space: Mapping[str, Any] | SearchSpace,
    trials_path: str | None = None,
    select: Mapping[str, Any] | None = None,
) -> BestTrial:
    """The best trial of ``tuning_job``; every trial goes to ``trials_path`` as JSON.

    With several metrics, the trial of the Pareto front that ``select`` picks
    (:mod:`hydra_vertex.pareto`; a bad rule is a :class:`~hydra_vertex.errors.SettingError`
    naming ``select.<field>``)."""
    from hydra_vertex.errors import SettingError
    from hydra_vertex.pareto import Select

    space = load_space(search_space)
    try:
        rule = Select.from_dict(dict(select or {}), space.metrics)
    except SettingError as e:
        raise SettingError(f"select.{e.field}".rstrip("."), e.rule, e.value, e.hint) from None
    job = read_job(location, tuning_job)
    from hydra_vertex.trials import trial_results

    if trials_path:  # written first, so that a job with no winner still leaves its trials
        write_trials(trials_path, tuning_job, trial_results(job), None)
    best = best_trial(job, space, rule)
    best = replace(best, parameters=typed_parameters(space, best.parameters))
    if trials_path:
        write_trials(trials_path, tuning_job, best.trials, best)
    if space.multi_objective:
        values = " ".join(f"{m}={v:.6g}" for m, v in zip(space.metrics, best.values, strict=True))
        common.log(
            f"Pareto front: trials {', '.join(best.pareto_trial_ids)}; "
            f"{rule.describe(space.metrics)}: trial {best.trial_id}: {values} -> "
            f"{' '.join(best.overrides)}"
        )
        return best
    common.log(
        f"best trial {best.trial_id}: {space.metric}={best.value:.6g} -> {' '.join(best.overrides)}"
    )
    return best


def write_trials(path: str, job: str, trials: list[Any], best: BestTrial | None) -> None:
    data: dict[str, Any] = {"tuning_job": job, "trials": [asdict(t) for t in trials]}
    if best is not None:
        data.update(
            best_trial_id=best.trial_id,
            best_value=best.value,
            best_overrides=best.overrides,
            best_parameters=best.parameters,
        )
        if best.pareto_trial_ids:
            data.update(pareto_trial_ids=best.pareto_trial_ids, best_values=best.values)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2))
