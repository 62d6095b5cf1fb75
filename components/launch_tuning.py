"""kfp component: launch the hyperparameter tuning job and wait for it."""

from kfp import dsl

from hydra_vertex.components._image import DEFAULT_COMPONENTS_IMAGE


@dsl.component(base_image=DEFAULT_COMPONENTS_IMAGE, install_kfp_package=False)
def launch_tuning(
    project: str,
    location: str,
    name: str,
    image_uri: str,
    app_command: list,
    search_space: dict,
    max_trial_count: int,
    parallel_trial_count: int,
    max_failed_trial_count: int,
    machine_type: str,
    service_account: str,
    staging_bucket: str,
    wandb: dict,
    seed: int,
    trial_timeout_seconds: int,
    launch_key: str,
    trial_machine: dict,
    job_settings: dict,
    tuning_options: dict,
    gcp_resources: dsl.OutputPath(str),  # type: ignore[valid-type]
) -> str:
    """Create a Vertex AI HyperparameterTuningJob whose trials start through hydra-vertex-shim.

    Created once per pipeline run and task: a restarted task resumes the job it created (found
    through ``gcp_resources`` or its launch label). SIGTERM (pipeline cancelled) cancels the job.
    429 and 5xx answers while waiting are retried.

    Args:
        project: Google Cloud project of the job.
        location: Vertex AI region.
        name: The app's name; the job is ``<name>-tuning``.
        image_uri: The training image (from ``build_image``).
        app_command: How the app starts, as an argv list (``["python", "train.py"]``).
        search_space: The search space in Hydra's sweep grammar (``metric``, ``direction``,
            ``params``), as in a search-space YAML file.
        max_trial_count: Trials to run in total.
        parallel_trial_count: Trials to run at once.
        max_failed_trial_count: Failed trials that fail the job (0: the service decides).
        machine_type: Machine type of each trial (``n1-standard-4``).
        service_account: Service account the trials run as (empty: the default).
        staging_bucket: ``gs://`` prefix for the trials' outputs (``AIP_MODEL_DIR`` etc.).
        wandb: W&B settings (project, entity, tags, mode, watch); empty for none.
        seed: Seed of the local emulator's suggestions (-1: random; Vertex ignores it).
        trial_timeout_seconds: Timeout of one trial (0: none).
        launch_key: Identifies this pipeline run (its job id), for create-once.
        trial_machine: Each trial's machine, with Vertex's names (all optional; a
            ``machine_type`` here wins over the parameter): ``accelerator_type``
            (an AcceleratorType name, ``NVIDIA_TESLA_T4``), ``accelerator_count``,
            ``boot_disk_type`` (``pd-ssd``, ``pd-standard``, ``hyperdisk-balanced``),
            ``boot_disk_size_gb``, ``replica_count`` (above 1: a chief pool of one replica and a
            worker pool of the rest), ``scheduling_strategy`` (``STANDARD``, ``SPOT``,
            ``FLEX_START``), ``max_wait_duration`` (seconds, FLEX_START),
            ``restart_job_on_worker_restart``. Empty: ``machine_type`` alone.
        job_settings: Settings of the job: ``network`` (``projects/NUMBER/global/networks/NAME``),
            ``reserved_ip_ranges``, ``encryption_key`` (a Cloud KMS key name, set as the job's
            ``encryption_spec``), ``labels``. Empty: none.
        tuning_options: ``algorithm`` (bayesian, grid, random), ``measurement_selection``
            (last, best), ``early_stopping`` (``{"rule": "median" or "decay_curve",
            "use_elapsed_duration": bool}``), applied to the StudySpec; empty: the search
            space's algorithm and selection, no early stopping.
        gcp_resources: The created job, in google-cloud-pipeline-components' format.

    Returns:
        The tuning job's resource name.
    """
    from hydra_vertex.steps.tune import launch_tuning as run

    return run(
        project=project,
        location=location,
        name=name,
        image_uri=image_uri,
        app_command=[str(a) for a in app_command],
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
        launch_key=launch_key,
        gcp_resources_path=gcp_resources,
        trial_machine=trial_machine,
        job_settings=job_settings,
        tuning_options=tuning_options,
    )
