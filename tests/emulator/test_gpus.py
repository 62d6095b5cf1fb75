"""GPU-aware jobs and local early stopping through the real GAPIC client over REST: the emulator
lends each process the fake GPUs it names (``start(gpus=...)``), refuses at create a job that
asks for more than the machine has, runs accelerator jobs without GPUs (with one warning) on a
machine with none, and stops trials by the decay-curve rule. The app (``tests/apps/curve_app``)
records the devices it was given and when it ran."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from _helpers import shim_command

from hydra_vertex.emulator import EmulatorHandle, start
from hydra_vertex.local_details import JobDetails, emulator_devices, job_details

CURVE_APP = Path(__file__).parents[1] / "apps" / "curve_app"
IMAGE = "local/curve:latest"
PARENT = "projects/test-project/locations/us-central1"
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
FIELD = "worker_pool_specs[0].machine_spec.accelerator_count"


def _emulator(tmp_path: Path, gpus: str) -> EmulatorHandle:
    return start(tmp_path / "state", images={IMAGE: str(CURVE_APP)}, seed=1, gpus=gpus)


@pytest.fixture
def four_gpus(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with _emulator(tmp_path, "0,1,2,3") as handle:
        yield handle


@pytest.fixture
def no_gpu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with _emulator(tmp_path, "") as handle:
        yield handle


def _client(emulator: EmulatorHandle) -> Any:
    from hydra_vertex.vertex import emulator_job_client

    return emulator_job_client(emulator.endpoint, emulator.token)


def _pool(command: list[str], count: int) -> dict[str, Any]:
    machine: dict[str, Any] = {"machine_type": "n1-standard-8"}
    if count:
        machine.update(accelerator_type="NVIDIA_TESLA_T4", accelerator_count=count)
    return {
        "machine_spec": machine,
        "replica_count": 1,
        "container_spec": {"image_uri": IMAGE, "command": command},
    }


def _app(record: Path, *args: str) -> list[str]:
    return [sys.executable, "app.py", f"record_dir={record}", *args]


def _custom_job(name: str, record: Path, count: int, *args: str) -> Any:
    from google.cloud.aiplatform_v1 import types

    return types.CustomJob(
        display_name=name,
        job_spec={"worker_pool_specs": [_pool(_app(record, f"name={name}", *args), count)]},
    )


def _tuning_job(
    record: Path, count: int, trials: int, parallel: int, *args: str, **study: Any
) -> Any:
    from google.cloud.aiplatform_v1 import types

    command = shim_command(f"record_dir={record}", *args)
    return types.HyperparameterTuningJob(
        display_name="curves",
        max_trial_count=trials,
        parallel_trial_count=parallel,
        study_spec=types.StudySpec(
            metrics=[{"metric_id": "loss", "goal": "MINIMIZE"}],
            parameters=[
                {"parameter_id": "rate", "discrete_value_spec": {"values": [0, 1, 2, 3, 4, 5]}}
            ],
            algorithm="GRID_SEARCH",  # rate 0, 1, 2, ... in trial order
            **study,
        ),
        trial_job_spec={"worker_pool_specs": [_pool(command, count)]},
    )


def _wait(get: Any, name: str) -> Any:
    deadline = time.monotonic() + 240
    while True:
        job = get(name=name)
        if job.state.name in TERMINAL:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def _records(record: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in record.glob("*.json")}


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["start"] < b["end"] and b["start"] < a["end"])


def test_a_job_asking_for_more_gpus_than_the_machine_has_is_refused_at_create(
    four_gpus: EmulatorHandle, tmp_path: Path
) -> None:
    from google.api_core import exceptions

    client = _client(four_gpus)
    with pytest.raises(exceptions.BadRequest) as tuning:
        client.create_hyperparameter_tuning_job(
            parent=PARENT, hyperparameter_tuning_job=_tuning_job(tmp_path, 8, 1, 1)
        )
    assert f"trial_job_spec.{FIELD} is 8 but this machine has 4 GPUs (0, 1, 2, 3" in str(
        tuning.value
    )
    with pytest.raises(exceptions.BadRequest, match=re.escape(f" job_spec.{FIELD} is 5 ")):
        client.create_custom_job(parent=PARENT, custom_job=_custom_job("big", tmp_path, 5))
    assert list(client.list_hyperparameter_tuning_jobs(parent=PARENT)) == []
    assert list(client.list_custom_jobs(parent=PARENT)) == []


def test_jobs_share_the_gpus_one_process_per_device_and_cpu_jobs_see_none(
    four_gpus: EmulatorHandle, tmp_path: Path
) -> None:
    """A tuning job (2 trials at once, 2 GPUs each), a custom job asking for 4 and one asking for
    none, all created together on 4 GPUs: whoever holds a device holds it alone."""
    record = tmp_path / "record"
    record.mkdir()
    client = _client(four_gpus)
    tuning = client.create_hyperparameter_tuning_job(
        parent=PARENT,
        hyperparameter_tuning_job=_tuning_job(record, 2, 2, 2, "epochs=5", "epoch_seconds=0.1"),
    )
    big = client.create_custom_job(
        parent=PARENT, custom_job=_custom_job("big", record, 4, "epochs=5", "epoch_seconds=0.1")
    )
    cpu = client.create_custom_job(parent=PARENT, custom_job=_custom_job("cpu", record, 0))
    assert _wait(client.get_hyperparameter_tuning_job, tuning.name).state.name == TERMINAL[0]
    for job in (big, cpu):
        assert _wait(client.get_custom_job, job.name).state.name == TERMINAL[0]

    records = _records(record)
    assert sorted(records) == ["1", "2", "big", "cpu"]
    assert records["cpu"]["cuda"] == "" and records["cpu"]["nvidia"] == "void"
    assert records["big"]["cuda"] == "0,1,2,3"
    for tid in ("1", "2"):
        assert len(records[tid]["cuda"].split(",")) == 2
    gpu_users = {k: v for k, v in records.items() if k != "cpu"}
    for (a, ra), (b, rb) in combinations(gpu_users.items(), 2):
        if _overlap(ra, rb):
            assert not set(ra["cuda"].split(",")) & set(rb["cuda"].split(",")), (a, b)
    assert not any(_overlap(records["big"], records[t]) for t in ("1", "2"))

    # The devices are stored with each process; the API does not render them, the emulator's
    # own details do.
    details = job_details(four_gpus.endpoint, four_gpus.token, tuning.name)
    assert {tid: ",".join(d.devices or ()) for tid, d in details.trials.items()} == {
        tid: records[tid]["cuda"] for tid in ("1", "2")
    }
    assert job_details(four_gpus.endpoint, four_gpus.token, big.name).devices == (
        "0",
        "1",
        "2",
        "3",
    )
    assert job_details(four_gpus.endpoint, four_gpus.token, cpu.name).devices == ()
    rendered = client.get_hyperparameter_tuning_job(name=tuning.name)
    assert "_devices" not in json.dumps(type(rendered).to_dict(rendered))
    assert job_details(four_gpus.endpoint, four_gpus.token, f"{PARENT}/customJobs/9") == (
        JobDetails()  # no such job: nothing to add (the route answers 404)
    )
    pool = emulator_devices(four_gpus.endpoint, four_gpus.token)
    assert pool == {"devices": ["0", "1", "2", "3"], "source": "--gpus", "held": {}, "waiting": []}


def test_on_a_machine_without_gpus_accelerator_jobs_run_without_them_with_one_warning(
    no_gpu: EmulatorHandle, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    record.mkdir()
    client = _client(no_gpu)
    tuning = client.create_hyperparameter_tuning_job(
        parent=PARENT, hyperparameter_tuning_job=_tuning_job(record, 2, 3, 2)
    )
    custom = client.create_custom_job(parent=PARENT, custom_job=_custom_job("retrain", record, 1))
    assert _wait(client.get_hyperparameter_tuning_job, tuning.name).state.name == TERMINAL[0]
    assert _wait(client.get_custom_job, custom.name).state.name == TERMINAL[0]

    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")  # nothing set: the process runs as it is
    assert {r["cuda"] for r in _records(record).values()} == {inherited}
    warning = (
        "warning: the job asks for 2 x NVIDIA_TESLA_T4 per trial but this machine has no GPU "
        "(--gpus names none; name them with --gpus or HYDRA_VERTEX_GPUS): its trials run without "
        "accelerators"
    )
    details = job_details(no_gpu.endpoint, no_gpu.token, tuning.name)
    assert details.warnings == (warning,)
    assert all(t.devices is None for t in details.trials.values())
    log = no_gpu.state_dir / "runs" / tuning.name.rsplit("/", 1)[-1] / "emulator.log"
    assert log.read_text() == f"hydra-vertex emulator: {warning}\n"  # once for the 3 trials
    # a custom job's log is its stderr.log: the warning comes first
    stderr = no_gpu.state_dir / "runs" / custom.name.rsplit("/", 1)[-1] / "stderr.log"
    first = stderr.read_text().splitlines()[0]
    assert first.startswith("hydra-vertex emulator: warning: the job asks for 1 x NVIDIA_TESLA_T4 ")
    assert first.endswith("its process runs without accelerators")


@pytest.mark.slow
def test_decay_curve_stopping_by_elapsed_duration(
    no_gpu: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rate 0 and 1 run their 30 epochs; rate 2 and 3 level off above the best, which the decay
    curve fitted to their first measurements (by seconds since the start) foresees."""
    from hydra_vertex.report import summary_from_tuning_job

    record = tmp_path / "record"
    record.mkdir()
    client = _client(no_gpu)
    spec = _tuning_job(
        record,
        0,
        4,
        2,
        "epochs=30",
        "epoch_seconds=0.1",
        decay_curve_stopping_spec={"use_elapsed_duration": True},
    )
    created = client.create_hyperparameter_tuning_job(parent=PARENT, hyperparameter_tuning_job=spec)
    job = _wait(client.get_hyperparameter_tuning_job, created.name)
    assert job.state.name == TERMINAL[0]
    assert [t.state.name for t in job.trials] == ["SUCCEEDED"] * 4
    # 30 epochs, then the objective (the shim's reporting callback) at step 31
    assert [len(t.measurements) for t in job.trials][:2] == [31, 31]
    for t in job.trials:  # the loop records each measurement's elapsed duration
        seconds = [m.elapsed_duration.total_seconds() for m in t.measurements]
        assert seconds == sorted(seconds) and seconds[0] > 0
        assert t.final_measurement.elapsed_duration.total_seconds() == seconds[-1]

    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", no_gpu.endpoint)
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", no_gpu.token)
    summary = summary_from_tuning_job(job)
    stopped = {t.id: t for t in summary.trials if t.stopped_early}
    assert sorted(stopped) == ["3", "4"]
    for t in stopped.values():
        assert t.stop_reason.startswith("extrapolated to ") and " s elapsed: " in t.stop_reason
        assert t.saved_steps and t.saved_steps > 0
    assert [len(t.measurements) for t in job.trials][2:] == [
        31 - (stopped[tid].saved_steps or 0) for tid in ("3", "4")
    ]
    assert summary.to_dict()["early_stopping"]["stopped_trials"] == 2
    assert _records(record)["3"]["stopped"] is True
