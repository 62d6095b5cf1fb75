"""A job never hangs: values that would make the suggester overflow are refused at create (400
naming the field), an exception in a runner ends the job FAILED (INTERNAL, the error in
``error.message``) after stopping its processes, a cancel always reaches CANCELLED (even when the
runner fails while cancelling), and the job can be deleted afterwards.

The runner exceptions come from the test-only fault points (``HYDRA_VERTEX_FAULT=<point>:raise``:
``OSError(ENOSPC)``, as a full disk gives while saving), in a real ``hydra-vertex emulator``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from _helpers import IMAGE, Emulator, marked_processes, until

from hydra_vertex.emulator import EmulatorHandle

PARENT = "projects/test-project/locations/us-central1"
SHIM = Path(sys.executable).with_name("hydra-vertex-shim")
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


def _job(
    max_trials: int = 3,
    parallel: int = 1,
    x: tuple[float, float] = (-5, 10),
    timeout: str | None = None,
    sleep: float = 0,
) -> Any:
    from google.cloud.aiplatform_v1 import types

    command = [str(SHIM), "--search-space", "space.yaml", "--", sys.executable, "fast_app.py"]
    pool: dict[str, Any] = {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": IMAGE, "command": [*command, f"sleep={sleep}"]},
    }
    spec: dict[str, Any] = {"worker_pool_specs": [pool]}
    if timeout is not None:
        spec["scheduling"] = {"timeout": timeout}
    return types.HyperparameterTuningJob(
        display_name="hang",
        max_trial_count=max_trials,
        parallel_trial_count=parallel,
        study_spec=types.StudySpec(
            metrics=[{"metric_id": "value", "goal": "MINIMIZE"}],
            parameters=[
                {"parameter_id": "x", "double_value_spec": {"min_value": x[0], "max_value": x[1]}},
                {"parameter_id": "y", "double_value_spec": {"min_value": 0, "max_value": 15}},
            ],
        ),
        trial_job_spec=spec,
    )


def _client(handle: EmulatorHandle) -> Any:
    from google.cloud import aiplatform_v1

    from hydra_vertex.vertex import bearer_credentials

    return aiplatform_v1.JobServiceClient(
        transport="rest",
        client_options={"api_endpoint": handle.endpoint},
        credentials=bearer_credentials(handle.token),
    )


@pytest.mark.parametrize(
    ("job", "needle"),
    [
        (_job(x=(-1.8e308, 1.8e308)), "parameter 'x': bounds must be finite, got -inf"),
        (_job(x=(-1.7e308, 1.7e308)), "'x': double_value_spec [-1.7e+308, 1.7e+308] overflows"),
        (_job(timeout="-5s"), "trial_job_spec.scheduling.timeout must not be negative"),
        (_job(max_trials=2, parallel=3), "parallel_trial_count (3) must not exceed"),
        (_job(max_trials=200, parallel=100), "the emulator runs at most 64 trials at once"),
    ],
    ids=[
        "infinite-double",
        "overflowing-double",
        "negative-timeout",
        "parallel-above-max",
        "parallel-above-ceiling",
    ],
)
def test_values_that_would_hang_a_job_get_400(
    emulator: EmulatorHandle, job: Any, needle: str
) -> None:
    from google.api_core import exceptions

    with pytest.raises(exceptions.BadRequest) as raised:
        _client(emulator).create_hyperparameter_tuning_job(
            parent=PARENT, hyperparameter_tuning_job=job
        )
    assert needle in raised.value.message


def _ended(client: Any, name: str) -> Any:
    found = client.get_hyperparameter_tuning_job(name=name)
    return found if found.state.name in TERMINAL else None


def test_a_runner_exception_ends_the_job_failed_then_it_deletes(tmp_path: Path) -> None:
    from google.api_core import exceptions

    emulator = Emulator(tmp_path / "state", fault="trial-stored:raise:2")
    try:
        client = emulator.client
        job = client.create_hyperparameter_tuning_job(
            parent=PARENT, hyperparameter_tuning_job=_job(max_trials=3)
        )
        ended = until(lambda: _ended(client, job.name), "the job to end", emulator.proc)
        assert ended.state.name == "JOB_STATE_FAILED"
        assert ended.error.code == 13  # INTERNAL
        assert "internal error in the emulator: OSError" in ended.error.message
        assert "No space left on device" in ended.error.message
        assert {t.state.name for t in ended.trials} <= {"SUCCEEDED", "INFEASIBLE"}
        assert not marked_processes(job.name.rsplit("/", 1)[-1])
        client.delete_hyperparameter_tuning_job(name=job.name).result(timeout=60)
        with pytest.raises(exceptions.NotFound):
            client.get_hyperparameter_tuning_job(name=job.name)
        log = emulator.log.read_text()
        assert "internal error: OSError" in log and "Traceback" not in log
    finally:
        emulator.stop()


def test_a_cancel_reaches_cancelled_even_if_the_runner_fails(tmp_path: Path) -> None:
    """The runner raises right after it saw the cancel: the job still ends CANCELLED, its
    (long) trials are stopped, and it deletes."""
    emulator = Emulator(tmp_path / "state", fault="cancelling:raise")
    try:
        client = emulator.client
        job = client.create_hyperparameter_tuning_job(
            parent=PARENT, hyperparameter_tuning_job=_job(max_trials=6, parallel=3, sleep=600)
        )
        job_id = job.name.rsplit("/", 1)[-1]
        until(lambda: marked_processes(job_id), "a trial to start", emulator.proc)
        client.cancel_hyperparameter_tuning_job(name=job.name)
        ended = until(lambda: _ended(client, job.name), "the job to end", emulator.proc)
        assert ended.state.name == "JOB_STATE_CANCELLED"
        assert ended.error.code == 1
        assert all(t.state.name == "INFEASIBLE" for t in ended.trials)
        until(lambda: not marked_processes(job_id), "its trials to be stopped", emulator.proc)
        client.delete_hyperparameter_tuning_job(name=job.name).result(timeout=60)
    finally:
        emulator.stop()
