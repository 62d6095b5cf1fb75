"""python-aiplatform's ``samples/model-builder`` hyperparameter-tuning samples (the SDK's
``aiplatform.CustomJob`` / ``HyperparameterTuningJob``), unchanged: each calls
``aiplatform.init(project, location[, staging_bucket])`` itself, which keeps the endpoint and
credentials that ``connect()`` set. The worker pool gives only ``image_uri``; the image's
ENTRYPOINT runs the trials.

The create sample asks for 128 trials, 8 in parallel (about a minute here: most of it is the
Bayesian suggester's asks), so it is marked ``slow``; get, cancel and delete run on a job that the
job_service snippet creates (2 trials)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from google.api_core import exceptions
from parity_support import (
    LOCATION,
    MODEL_BUILDER_IMAGE,
    PROJECT,
    create_tuning_job,
    load,
    wait_state,
)

from hydra_vertex.emulator import EmulatorHandle


@pytest.mark.slow
def test_create_get_delete_hyperparameter_tuning_job(sdk: Any) -> None:
    job = load(
        "model_builder/create_hyperparameter_tuning_job_sample.py"
    ).create_hyperparameter_tuning_job_sample(
        project=PROJECT,
        location=LOCATION,
        staging_bucket="gs://parity-bucket/model-builder",
        display_name=f"temp_model_builder_hpt_{uuid.uuid4()}",
        container_uri=MODEL_BUILDER_IMAGE,
    )
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    got = load(
        "model_builder/get_hyperparameter_tuning_job_sample.py"
    ).get_hyperparameter_tuning_job_sample(
        project=PROJECT, hyperparameter_tuning_job_id=job.resource_name, location=LOCATION
    )
    assert got.resource_name == job.resource_name and got.labels == {"my_key": "my_value"}
    trials = got.trials
    assert len(trials) == 128 and all(t.state.name == "SUCCEEDED" for t in trials)
    ids = {p.parameter_id for p in trials[0].parameters}
    assert ids == {"lr", "units", "activation", "batch_size"}
    load(
        "model_builder/delete_hyperparameter_tuning_job_sample.py"
    ).delete_hyperparameter_tuning_job_sample(
        project=PROJECT, hyperparameter_tuning_job_id=job.resource_name, location=LOCATION
    )
    with pytest.raises(exceptions.NotFound):
        sdk.HyperparameterTuningJob.get(job.resource_name)


def test_get_cancel_delete_hyperparameter_tuning_job(
    sdk: Any, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    name = create_tuning_job(emulator.endpoint, capsys, "temp_model_builder_cancel")
    job = load(
        "model_builder/get_hyperparameter_tuning_job_sample.py"
    ).get_hyperparameter_tuning_job_sample(
        project=PROJECT, hyperparameter_tuning_job_id=name, location=LOCATION
    )
    assert job.resource_name == name
    load(
        "model_builder/cancel_hyperparameter_tuning_job_sample.py"
    ).cancel_hyperparameter_tuning_job_sample(
        project=PROJECT, hyperparameter_tuning_job_id=name, location=LOCATION
    )
    wait_state(sdk.HyperparameterTuningJob.get, name, "JOB_STATE_CANCELLED")
    load(
        "model_builder/delete_hyperparameter_tuning_job_sample.py"
    ).delete_hyperparameter_tuning_job_sample(
        project=PROJECT, hyperparameter_tuning_job_id=name, location=LOCATION
    )
    with pytest.raises(exceptions.NotFound):
        sdk.HyperparameterTuningJob.get(name)
