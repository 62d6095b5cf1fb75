"""The tune-and-retrain pipeline: build -> tune -> best trial -> retrain.

``compile_template()`` writes the generic template (``pipelines/tune_and_retrain.json``): every
app-specific value is a pipeline parameter, so one file serves any app. What a job file gives
each parameter is :mod:`hydra_vertex.pipelines.job_request`.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from kfp import compiler, dsl

from hydra_vertex.components._image import DEFAULT_COMPONENTS_IMAGE
from hydra_vertex.components.best_trial import best_trial
from hydra_vertex.components.build_image import build_image
from hydra_vertex.components.launch_tuning import launch_tuning
from hydra_vertex.components.retrain import retrain
from hydra_vertex.pipelines.job_request import PIPELINE_NAME, TEMPLATE

__all__ = ["PIPELINE_NAME", "TEMPLATE", "compile_template", "compiled", "tune_and_retrain"]


class Outputs(NamedTuple):
    best_overrides: list
    best_value: float
    best_trial_id: str
    model_dir: str
    tuning_job: str
    retrain_job: str
    image_uri: str


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Tune a Hydra app with Vertex AI hyperparameter tuning, then retrain with the "
    "winning overrides (hydra-vertex).",
)
def tune_and_retrain(
    app_name: str,
    app_source: str,
    app_command: list,
    search_space: dict,
    project: str,
    location: str = "us-central1",
    staging_bucket: str = "gs://hydra-vertex-local",
    max_trial_count: int = 12,
    parallel_trial_count: int = 2,
    max_failed_trial_count: int = 0,
    machine_type: str = "n1-standard-4",
    service_account: str = "",
    retrain_overrides: list = [],  # noqa: B006 (kfp default)
    wandb: dict = {},  # noqa: B006 (kfp default)
    seed: int = -1,
    trial_timeout_seconds: int = 0,
    trial_machine: dict = {},  # noqa: B006 (kfp default)
    retrain_machine: dict = {},  # noqa: B006 (kfp default)
    job_settings: dict = {},  # noqa: B006 (kfp default)
    tuning_options: dict = {},  # noqa: B006 (kfp default)
) -> Outputs:
    """Args:
    app_name: The app's name (job and image names; lowercase, digits, - _ .).
    app_source: The app's source: a gs:// tarball (Cloud Build) or a local directory (emulator).
    app_command: How the app starts, as an argv list (["python", "train.py"]).
    search_space: The search space in Hydra's sweep grammar (metric, direction, params).
    project: Google Cloud project.
    location: Vertex AI region.
    staging_bucket: gs:// prefix for the jobs' outputs.
    max_trial_count: Trials in total.
    parallel_trial_count: Trials at once.
    max_failed_trial_count: Failed trials that fail the tuning job (0: the service decides).
    machine_type: Machine type of the trials and the retrain (unless trial_machine or
        retrain_machine names one).
    service_account: Service account of the jobs (empty: the default).
    retrain_overrides: Hydra overrides added for the final run.
    wandb: W&B settings (project, entity, tags, mode, watch, log_model).
    seed: Seed of the local emulator's suggestions (-1: random).
    trial_timeout_seconds: Timeout of one trial (0: none).
    trial_machine: Each trial's machine with Vertex's names: accelerator_type (NVIDIA_TESLA_T4,
        ...), accelerator_count, boot_disk_type, boot_disk_size_gb, replica_count,
        scheduling_strategy (STANDARD, SPOT, FLEX_START), max_wait_duration (seconds),
        restart_job_on_worker_restart, machine_type (see the launch_tuning component).
    retrain_machine: The retrain's whole machine, same names (empty: trial_machine's).
    job_settings: network, reserved_ip_ranges, encryption_key (KMS key name), labels: set on the
        tuning job and the retrain job.
    tuning_options: algorithm (bayesian, grid, random), measurement_selection (last, best),
        early_stopping ({"rule": "median" or "decay_curve", "use_elapsed_duration": bool}).
    """
    image = build_image(project=project, location=location, source=app_source, name=app_name)
    image.set_display_name("build-image")
    tune = launch_tuning(
        project=project,
        location=location,
        name=app_name,
        image_uri=image.output,
        app_command=app_command,
        search_space=search_space,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        machine_type=machine_type,
        service_account=service_account,
        staging_bucket=staging_bucket,
        wandb=wandb,
        seed=seed,
        trial_timeout_seconds=trial_timeout_seconds,
        launch_key=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        trial_machine=trial_machine,
        job_settings=job_settings,
        tuning_options=tuning_options,
    )
    tune.set_display_name("launch-tuning")
    best = best_trial(
        location=location, tuning_job=tune.outputs["Output"], search_space=search_space
    )
    best.set_display_name("best-trial")
    final = retrain(
        project=project,
        location=location,
        name=app_name,
        image_uri=image.output,
        app_command=app_command,
        best_overrides=best.outputs["best_overrides"],
        retrain_overrides=retrain_overrides,
        machine_type=machine_type,
        service_account=service_account,
        staging_bucket=staging_bucket,
        wandb=wandb,
        tuning_job=tune.outputs["Output"],
        launch_key=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        trial_machine=trial_machine,
        retrain_machine=retrain_machine,
        job_settings=job_settings,
    )
    final.set_display_name("retrain")
    return Outputs(
        best_overrides=best.outputs["best_overrides"],
        best_value=best.outputs["best_value"],
        best_trial_id=best.outputs["best_trial_id"],
        model_dir=final.outputs["model_dir"],
        tuning_job=tune.outputs["Output"],
        retrain_job=final.outputs["retrain_job"],
        image_uri=image.output,
    )


def compiled(components_image: str = DEFAULT_COMPONENTS_IMAGE) -> dict[str, Any]:
    """The compiled pipeline spec, with the components' image set to ``components_image``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pipeline.json")
        compiler.Compiler().compile(tune_and_retrain, path)
        spec: dict[str, Any] = json.loads(Path(path).read_text())
    for executor in spec["deploymentSpec"]["executors"].values():
        executor["container"]["image"] = components_image
    spec.get("sdkVersion")
    return spec


def compile_template(
    path: str | os.PathLike[str], components_image: str = DEFAULT_COMPONENTS_IMAGE
) -> Path:
    """Write the generic template to ``path`` (stable bytes: the checked-in copy is this output)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(compiled(components_image), indent=2, sort_keys=True) + "\n")
    return out
