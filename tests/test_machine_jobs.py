"""GPUs, SPOT, disk and replicas from a job file to the jobs, through the real client and the
emulator: the components' functions (what kfp runs) create the tuning and the retrain job from the
job file's pipeline parameters, and the SDK reads back exactly what Vertex would receive. A bad
setting fails before anything is uploaded, at the command line a user runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_vertex.emulator import EmulatorHandle, connect, start

BRANIN = Path(__file__).resolve().parent / "emulator" / "apps" / "branin"
IMAGE = "local/branin-gpu:latest"
CLI = Path(sys.executable).with_name("hydra-vertex")
KEY = "projects/test-project/locations/us-central1/keyRings/ring/cryptoKeys/key"
NETWORK = "projects/123456/global/networks/vpc"


def job_file(tmp_path: Path, **edits: Any) -> Path:
    """A job file for the Branin app on T4 x 2, SPOT, a 200 GB pd-ssd and 2 replicas."""
    data: dict[str, Any] = {
        "name": "branin",
        "app": {"source": str(BRANIN), "command": ["python", "app.py", "mode=ok"]},
        "search_space": str(BRANIN / "space.yaml"),
        "tuning": {
            "max_trials": 1,
            "parallel_trials": 1,
            "seed": 1,
            "timeout_seconds": 300,
            "measurement_selection": "best",
            "early_stopping": {"rule": "decay_curve", "use_elapsed_duration": True},
        },
        "retrain": {
            "overrides": ["mode=ok"],
            "vertex": {"accelerator_count": 1, "scheduling_strategy": "STANDARD"},
        },
        "vertex": {
            "project": "test-project",
            "region": "us-central1",
            "staging_bucket": "gs://gpu-bucket/staging",
            "machine_type": "n1-standard-8",
            "accelerator_type": "NVIDIA_TESLA_T4",
            "accelerator_count": 2,
            "boot_disk_type": "pd-ssd",
            "boot_disk_size_gb": 200,
            "replica_count": 2,
            "scheduling_strategy": "SPOT",
            "network": NETWORK,
            "reserved_ip_ranges": ["vertex-range"],
            "encryption_key": KEY,
            "labels": {"team": "vision"},
        },
    }
    for section, values in edits.items():
        data[section] = {**data.get(section, {}), **values}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorHandle]:
    with start(tmp_path / "state", images={IMAGE: str(BRANIN)}, seed=7) as handle:
        monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", handle.endpoint)
        monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", handle.token)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", handle.endpoint)
        connect(handle.state_dir, project="test-project", location="us-central1")
        yield handle


def _as_a_task_gets_them(parameters: dict[str, Any]) -> dict[str, Any]:
    """Pipeline parameters as they reach a task: a dict travels as a protobuf Struct, so the
    numbers in it arrive as doubles (int parameters are converted back by kfp)."""
    from google.protobuf import json_format, struct_pb2

    out = dict(parameters)
    for key, value in parameters.items():
        if isinstance(value, dict):
            out[key] = json_format.MessageToDict(json_format.ParseDict(value, struct_pb2.Struct()))
    return out


def _pool(accelerators: int) -> Any:
    """A worker pool as Vertex receives it (its container_spec is checked apart)."""
    from google.cloud.aiplatform_v1.types import WorkerPoolSpec

    return WorkerPoolSpec(
        machine_spec={
            "machine_type": "n1-standard-8",
            "accelerator_type": "NVIDIA_TESLA_T4",
            "accelerator_count": accelerators,
        },
        disk_spec={"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 200},
        replica_count=1,
    )


def _pools(spec: Any) -> list[Any]:
    """The job's worker pools without their container_spec."""
    from google.cloud.aiplatform_v1.types import WorkerPoolSpec

    out = []
    for pool in spec.worker_pool_specs:
        copy = WorkerPoolSpec(pool)
        del copy.container_spec
        out.append(copy)
    return out


def test_tuning_and_retrain_jobs_carry_the_job_files_vertex_settings(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    from google.cloud import aiplatform
    from google.cloud.aiplatform_v1.types import Scheduling, StudySpec

    from hydra_vertex import jobfile
    from hydra_vertex.components.launch_tuning import launch_tuning
    from hydra_vertex.components.retrain import retrain
    from hydra_vertex.local_run import load_space_data
    from hydra_vertex.pipelines.job_request import parameters
    from hydra_vertex.steps.best import pick

    spec = jobfile.load(job_file(tmp_path))
    p = _as_a_task_gets_them(parameters(spec, load_space_data(spec)[0]))
    common = {
        "project": p["project"],
        "location": p["location"],
        "name": p["app_name"],
        "image_uri": IMAGE,
        "app_command": p["app_command"],
        "machine_type": p["machine_type"],
        "service_account": p["service_account"],
        "staging_bucket": p["staging_bucket"],
        "wandb": p["wandb"],
        "launch_key": "run-1",
        "trial_machine": p["trial_machine"],
        "job_settings": p["job_settings"],
    }
    # The components' own functions: what kfp runs in each task.
    tuning_name = launch_tuning.python_func(
        **common,
        search_space=p["search_space"],
        max_trial_count=p["max_trial_count"],
        parallel_trial_count=p["parallel_trial_count"],
        max_failed_trial_count=p["max_failed_trial_count"],
        seed=p["seed"],
        trial_timeout_seconds=p["trial_timeout_seconds"],
        tuning_options=p["tuning_options"],
        gcp_resources=str(tmp_path / "tuning" / "gcp_resources"),
    )
    best = pick(location=p["location"], tuning_job=tuning_name, search_space=p["search_space"])
    _, retrain_name = retrain.python_func(
        **common,
        best_overrides=best.overrides,
        retrain_overrides=p["retrain_overrides"],
        tuning_job=tuning_name,
        retrain_machine=p["retrain_machine"],
        gcp_resources=str(tmp_path / "retrain" / "gcp_resources"),
    )

    # Read back through the SDK from the emulator.
    tuning = aiplatform.HyperparameterTuningJob.get(tuning_name).gca_resource
    assert tuning.state.name == "JOB_STATE_SUCCEEDED"  # the trial ran (no GPU needed locally)
    trial_spec = tuning.trial_job_spec
    assert _pools(trial_spec) == [_pool(2), _pool(2)]  # chief + 1 worker: 2 replicas
    chief, worker = trial_spec.worker_pool_specs
    assert chief.container_spec == worker.container_spec
    assert chief.container_spec.image_uri == IMAGE
    assert list(chief.container_spec.command)[-4:] == ["--", "python", "app.py", "mode=ok"]
    assert trial_spec.scheduling.strategy == Scheduling.Strategy.SPOT
    assert trial_spec.scheduling.timeout.total_seconds() == 300
    assert not trial_spec.scheduling.restart_job_on_worker_restart
    assert trial_spec.network == NETWORK
    assert list(trial_spec.reserved_ip_ranges) == ["vertex-range"]
    assert tuning.encryption_spec.kms_key_name == KEY
    assert dict(tuning.labels)["team"] == "vision"
    assert dict(tuning.labels)["hydra-vertex-seed"] == "1"
    study = tuning.study_spec
    assert study.measurement_selection_type == StudySpec.MeasurementSelectionType.BEST_MEASUREMENT
    assert study.algorithm == StudySpec.Algorithm.ALGORITHM_UNSPECIFIED  # the space's: bayesian
    assert StudySpec.pb(study).WhichOneof("automated_stopping_spec") == "decay_curve_stopping_spec"
    assert study.decay_curve_stopping_spec.use_elapsed_duration

    job = aiplatform.CustomJob.get(retrain_name).gca_resource
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    assert _pools(job.job_spec) == [_pool(1), _pool(1)]  # retrain.vertex: one T4 each
    assert job.job_spec.scheduling.strategy == Scheduling.Strategy.STANDARD
    assert not type(job.job_spec.scheduling).pb(job.job_spec.scheduling).HasField("timeout")
    assert job.job_spec.network == NETWORK
    assert list(job.job_spec.reserved_ip_ranges) == ["vertex-range"]
    assert job.encryption_spec.kms_key_name == KEY
    assert dict(job.labels)["team"] == "vision"
    command = list(job.job_spec.worker_pool_specs[0].container_spec.command)
    assert command[:5] == ["hydra-vertex-shim", "--retrain", "--", "python", "app.py"]
    assert command[-1] == "mode=ok"


def test_a_bad_parameter_value_names_the_parameter(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    """The template's dicts are checked in the task, as strictly as the job file."""
    from hydra_vertex.errors import SettingError
    from hydra_vertex.steps.retrain import retrain

    with pytest.raises(SettingError) as e:
        retrain(
            project="test-project",
            location="us-central1",
            name="branin",
            image_uri=IMAGE,
            app_command=["python", "app.py"],
            best_overrides=[],
            staging_bucket="gs://gpu-bucket/staging",
            launch_key="run-1",
            retrain_machine={"accelerator_type": "NVIDIA_TESLA_T5"},
        )
    assert str(e.value) == (
        "the retrain_machine parameter: 'accelerator_type' must be an aiplatform_v1 "
        "AcceleratorType name, got 'NVIDIA_TESLA_T5'; did you mean 'NVIDIA_TESLA_T4'?"
    )
    from google.cloud import aiplatform

    assert aiplatform.CustomJob.list() == []  # nothing was created


# -- bad settings fail before anything is uploaded -------------------------------------------------


def _cli(emulator: EmulatorHandle, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_")}
    env.pop("STORAGE_EMULATOR_HOST", None)
    env["HYDRA_VERTEX_EMULATOR"] = emulator.endpoint
    env["HYDRA_VERTEX_EMULATOR_TOKEN"] = emulator.token
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _nothing_uploaded(emulator: EmulatorHandle) -> None:
    from google.cloud import aiplatform

    from hydra_vertex.cloud_build import storage_client

    assert list(storage_client("test-project").list_buckets()) == []
    assert aiplatform.PipelineJob.list() == []
    assert aiplatform.HyperparameterTuningJob.list() == []


@pytest.mark.parametrize("command", [["submit"], ["run", "--local"]], ids=["submit", "run-local"])
def test_a_bad_accelerator_fails_before_any_upload_with_the_nearest_name(
    tmp_path: Path, emulator: EmulatorHandle, command: list[str]
) -> None:
    path = job_file(tmp_path, vertex={"accelerator_type": "NVIDIA_TESLA_T5"})
    done = _cli(emulator, tmp_path / "work", *command, str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"hydra-vertex {command[0]}: error: {path}: 'vertex.accelerator_type' must be an "
        "aiplatform_v1 AcceleratorType name, got 'NVIDIA_TESLA_T5'; did you mean "
        "'NVIDIA_TESLA_T4'? (see docs/job-file.md)"
    )
    _nothing_uploaded(emulator)
    assert not (tmp_path / "work" / ".hydra-vertex").exists()  # no run directory, no emulator


def test_an_algorithm_conflict_with_the_space_fails_before_any_upload(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    space = tmp_path / "grid.yaml"
    space.write_text(
        "metric: value\ndirection: minimize\nalgorithm: grid\n"
        "params:\n  x: choice(0, 1, 2)\n  y: choice(1, 2)\n"
    )
    path = job_file(tmp_path, tuning={"algorithm": "random"})
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "search_space": str(space)}))
    done = _cli(emulator, tmp_path / "work", "submit", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        f"{path}: 'tuning.algorithm' conflicts with the search space ({space} sets algorithm: "
        "grid); set it in one place, got 'random'" in done.stderr
    )
    assert "Traceback" not in done.stderr
    _nothing_uploaded(emulator)
