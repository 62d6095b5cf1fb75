"""kfp component: the best trial of a finished tuning job, as Hydra overrides."""

from typing import NamedTuple

from kfp import dsl

from hydra_vertex.components._image import DEFAULT_COMPONENTS_IMAGE


@dsl.component(base_image=DEFAULT_COMPONENTS_IMAGE, install_kfp_package=False)
def best_trial(
    location: str,
    tuning_job: str,
    search_space: dict,
    trials: dsl.Output[dsl.Artifact],
    select: dict = {},  # noqa: B006 (kfp default)
) -> NamedTuple(  # type: ignore[valid-type]
    "Outputs",
    best_overrides=list,
    best_value=float,
    best_trial_id=str,
    best_parameters=dict,
    pareto_trial_ids=list,
):
    """Pick the best trial: by the metric's goal, INFEASIBLE trials skipped, the measurement
    selection honoured, ties to the smaller trial id. With several metrics: the Pareto front of
    the SUCCEEDED trials, and the trial of the front that ``select`` picks. No successful trial
    fails the task with how many trials failed and why.

    Args:
        location: Vertex AI region of the job.
        tuning_job: The tuning job's resource name (from ``launch_tuning``).
        search_space: The search space, which types the overrides (an int stays an int).
        trials: Every trial (id, state, parameters, value, infeasible reason) as JSON.
        select: With several metrics, the rule that picks the trial to retrain from the Pareto
            front: {"metric": NAME} (the front's best by it) or {"weights": {NAME: NUMBER}} (the
            front's smallest weighted sum); empty: the first metric.

    Returns:
        best_overrides: The winner's Hydra overrides (``key=value`` strings).
        best_value: The winner's objective value.
        best_trial_id: The winner's trial id.
        best_parameters: The winner's parameters as Vertex reported them.
        pareto_trial_ids: With several metrics, the Pareto front's trial ids (else empty).
    """
    from collections import namedtuple

    from hydra_vertex.steps.best import pick

    best = pick(
        location=location,
        tuning_job=tuning_job,
        search_space=search_space,
        trials_path=trials.path,
        select=select,
    )
    trials.metadata["best_trial_id"] = best.trial_id
    trials.metadata["best_value"] = best.value
    if best.pareto_trial_ids:
        trials.metadata["pareto_trial_ids"] = best.pareto_trial_ids
    Outputs = namedtuple(
        "Outputs",
        ["best_overrides", "best_value", "best_trial_id", "best_parameters", "pareto_trial_ids"],
    )
    return Outputs(
        best.overrides, best.value, best.trial_id, best.parameters, best.pareto_trial_ids
    )
