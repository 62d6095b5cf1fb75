"""kfp component: retrain with the winning overrides."""

from typing import NamedTuple

from kfp import dsl

from hydra_vertex.components._image import DEFAULT_COMPONENTS_IMAGE


@dsl.component(base_image=DEFAULT_COMPONENTS_IMAGE, install_kfp_package=False)
def retrain(
    project: str,
    location: str,
    name: str,
    image_uri: str,
    app_command: list,
    best_overrides: list,
    retrain_overrides: list,
    machine_type: str,
    service_account: str,
    staging_bucket: str,
    wandb: dict,
    tuning_job: str,
    launch_key: str,
    trial_machine: dict,
    retrain_machine: dict,
    job_settings: dict,
    gcp_resources: dsl.OutputPath(str),  # type: ignore[valid-type]
) -> NamedTuple("Outputs", model_dir=str, retrain_job=str):  # type: ignore[valid-type]
    """Run the app once more as a Vertex AI CustomJob with the winning overrides.

    The command is ``app_command + best_overrides + retrain_overrides``; a retrain override for a
    key the tuning also set replaces the tuned value.

    Args:
        project: Google Cloud project of the job.
        location: Vertex AI region.
        name: The app's name; the job is ``<name>-retrain``.
        image_uri: The training image (from ``build_image``).
        app_command: How the app starts, as an argv list.
        best_overrides: The winner's Hydra overrides (from ``best_trial``).
        retrain_overrides: Final-run Hydra overrides (more epochs, say).
        machine_type: Machine type of the job.
        service_account: Service account the job runs as (empty: the default).
        staging_bucket: ``gs://`` prefix for the job's outputs.
        wandb: W&B settings; the run is ``<name>-retrain`` in the tuning job's group.
        tuning_job: The tuning job's resource name (the W&B group).
        launch_key: Identifies this pipeline run (its job id), for create-once.
        trial_machine: The trials' machine settings (see ``launch_tuning``): the retrain's
            when ``retrain_machine`` is empty.
        retrain_machine: The retrain's own machine, with the same names
            (``{"accelerator_type": "NVIDIA_L4", "accelerator_count": 1}``); whole, not merged
            with ``trial_machine`` (what it leaves out is Vertex's default). Empty: the trials'.
        job_settings: ``network``, ``reserved_ip_ranges``, ``encryption_key``, ``labels`` (see
            ``launch_tuning``).
        gcp_resources: The created job, in google-cloud-pipeline-components' format.

    Returns:
        model_dir: Where the model went (the job's ``AIP_MODEL_DIR``).
        retrain_job: The custom job's resource name.
    """
    from collections import namedtuple

    from hydra_vertex.steps.retrain import retrain as run

    model_dir, job = run(
        project=project,
        location=location,
        name=name,
        image_uri=image_uri,
        app_command=[str(a) for a in app_command],
        best_overrides=[str(o) for o in best_overrides],
        retrain_overrides=[str(o) for o in retrain_overrides],
        machine_type=machine_type,
        service_account=service_account,
        staging_bucket=staging_bucket,
        wandb=wandb,
        tuning_job=tuning_job,
        launch_key=launch_key,
        gcp_resources_path=gcp_resources,
        trial_machine=trial_machine,
        retrain_machine=retrain_machine,
        job_settings=job_settings,
    )
    Outputs = namedtuple("Outputs", ["model_dir", "retrain_job"])
    return Outputs(model_dir, job)
