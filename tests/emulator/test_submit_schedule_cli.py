"""`hydra-vertex submit` and `hydra-vertex schedule` against the emulator: the Google Cloud path
end to end (source tarball to Cloud Storage, Cloud Build, a Vertex AI Pipelines run), on one
machine, with the CLI a user runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hydra_vertex.emulator import EmulatorHandle, connect, start

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
CLI = Path(sys.executable).with_name("hydra-vertex")

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorHandle]:
    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    monkeypatch.setenv("HYDRA_VERTEX_CACHE_DIR", str(tmp_path / "cache"))
    with start(tmp_path / "state", seed=0) as handle:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", handle.endpoint)
        connect(handle.state_dir, project="local-project", location="us-central1")
        yield handle


KMS_KEY = "projects/local-project/locations/us-central1/keyRings/r/cryptoKeys/k"


def _job_file(tmp_path: Path, **vertex: object) -> Path:
    data = yaml.safe_load((DIGITS / "job.yaml").read_text())
    data["app"]["source"] = str(DIGITS)
    data["search_space"] = str(DIGITS / "search_space.yaml")
    data["tuning"].update(max_trials=2, parallel_trials=2)
    data["vertex"]["staging_bucket"] = "gs://cli-bucket/hydra-vertex"
    data["vertex"].update(vertex)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(emulator: EmulatorHandle, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HYDRA_VERTEX_EMULATOR": emulator.endpoint,
        "HYDRA_VERTEX_EMULATOR_TOKEN": emulator.token,
    }
    env.pop("STORAGE_EMULATOR_HOST", None)  # the CLI points Cloud Storage at the emulator itself
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=600)


def test_submit_runs_the_pipeline_through_cloud_build(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    from google.cloud import aiplatform

    gpu_spot = {
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 2,
        "scheduling_strategy": "SPOT",
        "encryption_key": KMS_KEY,
        "labels": {"team": "digits"},
    }
    done = _cli(emulator, "submit", str(_job_file(tmp_path, **gpu_spot)), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    name = done.stdout.strip().splitlines()[-1]
    assert "/pipelineJobs/" in name
    # quiet against the emulator: the console line and the name, no SDK chatter, no Google link
    assert done.stdout.strip().splitlines() == [
        f"console: {emulator.endpoint}/console/pipelineJobs/{name.rsplit('/', 1)[-1]}"
        f"?token={emulator.console_token}",  # the read-only console token
        name,
    ]
    assert "console.cloud.google.com" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    job = aiplatform.PipelineJob.get(name)
    assert job.state.name == "PIPELINE_STATE_SUCCEEDED"
    params = dict(job.runtime_config.parameter_values)
    assert str(params["app_source"]).startswith("gs://cli-bucket/hydra-vertex/sources/digits-")
    [build] = [t for t in job.task_details if t.task_name == "build-image"]
    image = build.execution.metadata["output:Output"]
    assert "@sha256:" in image  # pinned by digest, built by the emulator's Cloud Build
    [root] = [t for t in job.task_details if t.task_name == "hydra-vertex-tune-and-retrain"]
    assert list(root.execution.metadata["output:best_overrides"])
    # The KMS key and the labels reach the pipeline run and, through the components, its jobs;
    # the trials ran on this machine although they ask for GPUs.
    assert job.gca_resource.encryption_spec.kms_key_name == KMS_KEY
    assert dict(job.labels) == {"hydra-vertex-app": "digits", "team": "digits"}
    [tuning] = aiplatform.HyperparameterTuningJob.list()
    [retrain] = aiplatform.CustomJob.list(filter='display_name="digits-retrain"')
    for resource, spec in (
        (tuning.gca_resource, tuning.gca_resource.trial_job_spec),
        (retrain.gca_resource, retrain.gca_resource.job_spec),
    ):
        assert resource.encryption_spec.kms_key_name == KMS_KEY
        assert dict(resource.labels)["team"] == "digits"
        machine = spec.worker_pool_specs[0].machine_spec
        assert (machine.accelerator_type.name, machine.accelerator_count) == ("NVIDIA_TESLA_T4", 2)
        assert spec.scheduling.strategy.name == "SPOT"


def test_schedule_creates_a_schedule_that_runs(emulator: EmulatorHandle, tmp_path: Path) -> None:
    from google.cloud import aiplatform

    bad = _cli(emulator, "schedule", str(_job_file(tmp_path)), "--cron", "every monday")
    assert bad.returncode == 2 and "--cron 'every monday'" in bad.stderr
    done = _cli(
        emulator, "schedule", str(_job_file(tmp_path)), "--cron", "* * * * *", "--max-runs", "1"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    name = done.stdout.strip().splitlines()[-1]
    assert "/schedules/" in name
    deadline = time.monotonic() + 180
    schedule = aiplatform.PipelineJobSchedule.get(name)
    while schedule.state.name != "COMPLETED":
        assert time.monotonic() < deadline, schedule.state.name
        time.sleep(1)
        schedule = aiplatform.PipelineJobSchedule.get(name)
    [run] = aiplatform.PipelineJob.list(filter=f'schedule_name="{name}"')
    while run.state.name in ("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING"):
        assert time.monotonic() < deadline
        time.sleep(1)
        run = aiplatform.PipelineJob.get(run.resource_name)
    assert run.state.name == "PIPELINE_STATE_SUCCEEDED"
