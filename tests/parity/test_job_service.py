"""python-aiplatform's ``samples/snippets/job_service`` (GAPIC JobServiceClient), run as Google's
own tests run them: the sample prints the response, the test reads the name from it with the
snippets' ``helpers``. Their worker pools give only ``image_uri`` (``command``/``args`` empty): the
image's ENTRYPOINT runs, and a trial's arguments come after it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from google.api_core import exceptions
from parity_support import PROJECT, SNIPPETS_IMAGE, create_tuning_job, load, wait_state

from hydra_vertex.emulator import EmulatorHandle

helpers = load("job_service/helpers.py")


def _id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _stdout(emulator: EmulatorHandle, job_id: str, trial: str | None = None) -> str:
    run = emulator.state_dir / "runs" / job_id
    path = (run / trial if trial else run) / "stdout.log"
    return path.read_text() if path.exists() else ""


def test_create_get_cancel_delete_custom_job(
    sdk: Any, job_client: Any, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    load("job_service/create_custom_job_sample.py").create_custom_job_sample(
        display_name=f"temp_create_custom_job_test_{uuid.uuid4()}",
        container_image_uri=SNIPPETS_IMAGE,
        project=PROJECT,
        api_endpoint=emulator.endpoint,
    )
    out, _ = capsys.readouterr()
    assert "response" in out
    name = helpers.get_name(out)
    # the image's ENTRYPOINT runs, in its WORKDIR (/ = the image directory), with no arguments
    deadline = time.monotonic() + 60
    while "epoch 1" not in _stdout(emulator, _id(name)):
        assert time.monotonic() < deadline, _stdout(emulator, _id(name))
        time.sleep(0.2)
    log = _stdout(emulator, _id(name))
    assert "trainer.task started: argv=[]" in log

    load("job_service/get_custom_job_sample.py").get_custom_job_sample(
        project=PROJECT, custom_job_id=_id(name), api_endpoint=emulator.endpoint
    )
    out, _ = capsys.readouterr()
    assert helpers.get_name(out) == name and "JOB_STATE_RUNNING" in out

    load("job_service/cancel_custom_job_sample.py").cancel_custom_job_sample(
        project=PROJECT, custom_job_id=_id(name), api_endpoint=emulator.endpoint
    )
    wait_state(lambda n: job_client.get_custom_job(name=n), name, "JOB_STATE_CANCELLED")
    load("job_service/delete_custom_job_sample.py").delete_custom_job_sample(
        project=PROJECT, custom_job_id=_id(name), api_endpoint=emulator.endpoint
    )
    out, _ = capsys.readouterr()
    assert f"Long running operation: {name}/operations/" in out
    with pytest.raises(exceptions.NotFound):
        job_client.get_custom_job(name=name)


def test_create_get_delete_hyperparameter_tuning_job(
    sdk: Any, job_client: Any, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    name = create_tuning_job(
        emulator.endpoint, capsys, "temp_create_hyperparameter_tuning_job_test"
    )
    wait_state(
        lambda n: job_client.get_hyperparameter_tuning_job(name=n), name, "JOB_STATE_SUCCEEDED"
    )
    load(
        "job_service/get_hyperparameter_tuning_job_sample.py"
    ).get_hyperparameter_tuning_job_sample(
        project=PROJECT, hyperparameter_tuning_job_id=_id(name), api_endpoint=emulator.endpoint
    )
    out, _ = capsys.readouterr()
    assert helpers.get_name(out) == name and "state: JOB_STATE_SUCCEEDED" in out
    job = job_client.get_hyperparameter_tuning_job(name=name)
    assert len(job.trials) == 2
    for trial in job.trials:
        assert trial.state.name == "SUCCEEDED", trial.infeasible_reason
        [param] = trial.parameters
        assert param.parameter_id == "lr" and 0.001 <= param.value <= 0.1
        # the trial's CustomJob ran the ENTRYPOINT with the trial's argument after it
        trial_job = job_client.get_custom_job(name=trial.custom_job)
        assert trial_job.state.name == "JOB_STATE_SUCCEEDED"
        [arg] = trial_job.job_spec.worker_pool_specs[0].container_spec.args
        assert arg.startswith("--lr=")
        assert f"argv=['{arg}']" in _stdout(emulator, _id(name), trial.id)
    load(
        "job_service/delete_hyperparameter_tuning_job_sample.py"
    ).delete_hyperparameter_tuning_job_sample(
        project=PROJECT, hyperparameter_tuning_job_id=_id(name), api_endpoint=emulator.endpoint
    )
    out, _ = capsys.readouterr()
    assert "delete_hyperparameter_tuning_job_response" in out
    with pytest.raises(exceptions.NotFound):
        job_client.get_hyperparameter_tuning_job(name=name)


def test_cancel_hyperparameter_tuning_job(
    sdk: Any, job_client: Any, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    name = create_tuning_job(
        emulator.endpoint, capsys, "temp_cancel_hyperparameter_tuning_job_test"
    )
    load(
        "job_service/cancel_hyperparameter_tuning_job_sample.py"
    ).cancel_hyperparameter_tuning_job_sample(
        project=PROJECT, hyperparameter_tuning_job_id=_id(name), api_endpoint=emulator.endpoint
    )
    wait_state(
        lambda n: job_client.get_hyperparameter_tuning_job(name=n), name, "JOB_STATE_CANCELLED"
    )
    assert job_client.get_hyperparameter_tuning_job(name=name).error.code == 1
