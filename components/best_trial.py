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
) -> NamedTuple(  # type: ignore[valid-type]
    "Outputs", best_overrides=list, best_value=float, best_trial_id=str, best_parameters=dict
):
    """Pick the best trial: by the metric's goal, INFEASIBLE trials skipped, the measurement
    selection honoured, ties to the smaller trial id. No successful trial fails the task with how
    many trials failed and why.

    Args:
        location: Vertex AI region of the job.
        tuning_job: The tuning job's resource name (from ``launch_tuning``).
        search_space: The search space, which types the overrides (an int stays an int).
        trials: Every trial (id, state, parameters, value, infeasible reason) as JSON.

    Returns:
        best_overrides: The winner's Hydra overrides (``key=value`` strings).
        best_value: The winner's objective value.
        best_trial_id: The winner's trial id.
        best_parameters: The winner's parameters as Vertex reported them.
    """
    from collections import namedtuple

    from hydra_vertex.steps.best import pick

    best = pick(
        location=location, tuning_job=tuning_job, search_space=search_space, trials_path=trials.path
    )
    trials.metadata["best_trial_id"] = best.trial_id
    trials.metadata["best_value"] = best.value
    Outputs = namedtuple(
        "Outputs", ["best_overrides", "best_value", "best_trial_id", "best_parameters"]
    )
    return Outputs(best.overrides, best.value, best.trial_id, best.parameters)
