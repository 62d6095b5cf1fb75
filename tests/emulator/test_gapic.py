"""Spec features the high-level SDK does not expose, through the GAPIC client over REST:
median automated stopping and BEST_MEASUREMENT selection; delete and paged list."""

from __future__ import annotations

import time
from typing import Any

from _helpers import IMAGE, shim_command

from hydra_vertex.emulator import EmulatorHandle

PARENT = "projects/test-project/locations/us-central1"


def _client(emulator: EmulatorHandle) -> Any:
    from google.cloud import aiplatform_v1

    from hydra_vertex.vertex import bearer_credentials

    return aiplatform_v1.JobServiceClient(
        transport="rest",
        client_options={"api_endpoint": emulator.endpoint},
        credentials=bearer_credentials(emulator.token),
    )


def _job(mode: str, max_trials: int, **study: Any) -> Any:
    from google.cloud.aiplatform_v1 import types

    return types.HyperparameterTuningJob(
        display_name=f"gapic-{mode}",
        max_trial_count=max_trials,
        parallel_trial_count=1,
        study_spec=types.StudySpec(
            metrics=[{"metric_id": "value", "goal": "MINIMIZE"}],
            parameters=[
                {"parameter_id": "x", "double_value_spec": {"min_value": -5, "max_value": 10}},
                {"parameter_id": "y", "double_value_spec": {"min_value": 0, "max_value": 15}},
            ],
            algorithm="RANDOM_SEARCH",
            **study,
        ),
        trial_job_spec={
            "worker_pool_specs": [
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": IMAGE, "command": shim_command(f"mode={mode}")},
                }
            ]
        },
    )


def _wait(client: Any, name: str) -> Any:
    deadline = time.monotonic() + 240
    while True:
        job = client.get_hyperparameter_tuning_job(name=name)
        if job.state.name in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
            return job
        assert time.monotonic() < deadline
        time.sleep(0.3)


def test_median_stopping_and_best_measurement(emulator: EmulatorHandle) -> None:
    client = _client(emulator)
    spec = _job(
        "curve",
        6,
        median_automated_stopping_spec={},
        measurement_selection_type="BEST_MEASUREMENT",
    )
    created = client.create_hyperparameter_tuning_job(parent=PARENT, hyperparameter_tuning_job=spec)
    job = _wait(client, created.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    assert len(job.trials) == 6
    assert all(t.state.name == "SUCCEEDED" for t in job.trials)
    steps = [len(t.measurements) for t in job.trials]
    assert steps[:2] == [5, 5]  # the first two complete: the rule needs completed trials
    assert min(steps) < 5, steps  # some later trial was stopped early
    for t in job.trials:
        best = min(m.metrics[0].value for m in t.measurements)
        assert t.final_measurement.metrics[0].value == best


def test_delete_and_paged_list(emulator: EmulatorHandle) -> None:
    import pytest
    from google.api_core import exceptions

    client = _client(emulator)
    names = []
    for mode in ("hang", "crash", "crash"):
        job = client.create_hyperparameter_tuning_job(
            parent=PARENT, hyperparameter_tuning_job=_job(mode, 1)
        )
        names.append(job.name)
    # still running: 400 with status FAILED_PRECONDITION (api_core maps by HTTP code)
    with pytest.raises(exceptions.BadRequest, match="cancel it before deleting"):
        client.delete_hyperparameter_tuning_job(name=names[0])
    client.cancel_hyperparameter_tuning_job(name=names[0])
    for name in names:
        _wait(client, name)
    pager = client.list_hyperparameter_tuning_jobs(request={"parent": PARENT, "page_size": 2})
    assert sorted(j.name for j in pager) == sorted(names)
    client.delete_hyperparameter_tuning_job(name=names[0]).result()
    with pytest.raises(exceptions.NotFound):
        client.get_hyperparameter_tuning_job(name=names[0])
