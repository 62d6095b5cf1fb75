"""Pipeline jobs and schedules in the emulator, through the unchanged aiplatform SDK: the
compiled template runs on the digits example; schedules fire on time, exactly once across a
restart; bad specs, parameters and cron expressions get 400 naming the field."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_vertex.emulator import EmulatorHandle, connect, start

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "pipelines" / "tune_and_retrain.json"
DIGITS = ROOT / "examples" / "digits"
PARENT = "projects/local-project/locations/us-central1"


def _params(**extra: Any) -> dict[str, Any]:
    return {
        "app_name": "digits",
        "app_source": str(DIGITS),
        "app_command": ["python", "train.py"],
        "search_space": yaml.safe_load((DIGITS / "search_space.yaml").read_text()),
        "project": "local-project",
        "staging_bucket": "gs://bucket/runs",
        "max_trial_count": 2,
        "parallel_trial_count": 2,
        "retrain_overrides": ["val_fraction=0.1"],
        "seed": 1,
        **extra,
    }


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    monkeypatch.setenv("HYDRA_VERTEX_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "state"


@pytest.fixture
def emulator(env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorHandle]:
    with start(env, seed=0) as handle:
        _connect(handle, monkeypatch)
        yield handle


def _connect(handle: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud.aiplatform import pipeline_jobs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", handle.endpoint)
    monkeypatch.setattr(pipeline_jobs, "_JOB_WAIT_TIME", 1)  # the SDK's poll interval
    connect(handle.state_dir, project="local-project", location="us-central1")


def _job(**params: Any) -> Any:
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name="digits",
        template_path=str(TEMPLATE),
        pipeline_root="gs://bucket/pipeline-root",
        parameter_values=_params(**params),
        enable_caching=False,
    )


def _root_outputs(job: Any) -> dict[str, Any]:
    [root] = [t for t in job.task_details if t.task_name == "hydra-vertex-tune-and-retrain"]
    return {k.removeprefix("output:"): v for k, v in root.execution.metadata.items()}


@pytest.mark.slow
def test_the_template_runs_as_a_pipeline_job(emulator: EmulatorHandle, env: Path) -> None:
    job = _job()
    job.submit()
    job.wait()
    assert job.state.name == "PIPELINE_STATE_SUCCEEDED"
    outputs = _root_outputs(job)
    overrides = list(outputs["best_overrides"])
    assert overrides and all("=" in o for o in overrides)
    assert outputs["best_trial_id"] in ("1", "2")
    tasks = {t.task_name: t.state.name for t in job.task_details}
    assert tasks == {
        "hydra-vertex-tune-and-retrain": "SUCCEEDED",
        "build-image": "SUCCEEDED",
        "launch-tuning": "SUCCEEDED",
        "best-trial": "SUCCEEDED",
        "retrain": "SUCCEEDED",
    }
    [best] = [t for t in job.task_details if t.task_name == "best-trial"]
    [trials] = best.outputs["trials"].artifacts
    assert trials.uri.startswith(f"gs://bucket/pipeline-root/{job.name}/")
    local = env / "storage" / trials.uri.removeprefix("gs://")
    assert len(json.loads(local.read_text())["trials"]) == 2
    model = env / "storage" / str(outputs["model_dir"]).removeprefix("gs://")
    assert (model / "model.pkl").is_file()


@pytest.mark.slow
def test_cancel_stops_the_run_and_its_tuning_job(emulator: EmulatorHandle) -> None:
    from google.cloud import aiplatform

    from hydra_vertex import gcp_resources

    job = _job(max_trial_count=40, parallel_trial_count=1)
    job.submit()
    pipelines = _gapic("PipelineServiceClient", emulator)
    deadline = time.monotonic() + 120
    # While it runs, the launch-tuning task names the job it created (its gcp_resources).
    named: list[str] = []
    while not named:
        assert time.monotonic() < deadline, "the launch-tuning task never named its job"
        time.sleep(0.2)
        got = pipelines.get_pipeline_job(name=job.resource_name)
        for task in got.job_detail.task_details:
            if task.task_name == "launch-tuning" and task.state.name == "RUNNING":
                text = task.execution.metadata.get("output:gcp_resources")
                named = gcp_resources.names(text, "HyperparameterTuningJob") if text else []
    [tuning] = aiplatform.HyperparameterTuningJob.list()
    assert named == [tuning.resource_name]
    job.cancel()
    while job.state.name not in ("PIPELINE_STATE_CANCELLED", "PIPELINE_STATE_FAILED"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job.state.name == "PIPELINE_STATE_CANCELLED"
    # The cancel reached the tuning job before the pipeline job reported CANCELLED.
    tuning = aiplatform.HyperparameterTuningJob.get(tuning.resource_name)
    assert tuning.state.name == "JOB_STATE_CANCELLED"
    assert len(tuning.trials) < 40
    assert all(t.state.name != "ACTIVE" for t in tuning.trials)


def _gapic(kind: str, handle: EmulatorHandle) -> Any:
    from google.cloud import aiplatform_v1

    from hydra_vertex.vertex import bearer_credentials

    cls = getattr(aiplatform_v1, kind)
    return cls(
        transport="rest",
        client_options={"api_endpoint": handle.endpoint},
        credentials=bearer_credentials(handle.token),
    )


def _spec() -> dict[str, Any]:
    return dict(json.loads(TEMPLATE.read_text()))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda j: j.update(pipeline_spec={"foo": 1}), "pipeline_spec is not a compiled pipeline"),
        (
            lambda j: j["runtime_config"]["parameter_values"].update(bogus="x"),
            "unknown parameter(s) ['bogus']",
        ),
        (
            lambda j: j["runtime_config"]["parameter_values"].pop("app_name"),
            "missing required parameter(s) ['app_name']",
        ),
        (
            lambda j: j["runtime_config"].update(gcs_output_directory="/tmp/x"),
            "gcs_output_directory must be a gs:// URI",
        ),
    ],
    ids=["malformed-spec", "unknown-parameter", "missing-parameter", "bad-root"],
)
def test_bad_pipeline_jobs_get_400_naming_the_field(
    emulator: EmulatorHandle, change: Any, needle: str
) -> None:
    from google.api_core import exceptions
    from google.protobuf import json_format, struct_pb2

    values = {}
    for k, v in _params().items():
        val = struct_pb2.Value()
        json_format.ParseDict(v, val)
        values[k] = val
    job: dict[str, Any] = {
        "display_name": "bad",
        "pipeline_spec": _spec(),
        "runtime_config": {"gcs_output_directory": "gs://bucket/root", "parameter_values": values},
    }
    change(job)
    client = _gapic("PipelineServiceClient", emulator)
    with pytest.raises(exceptions.BadRequest) as e:
        client.create_pipeline_job(parent=PARENT, pipeline_job=job)
    assert needle in str(e.value)


@pytest.mark.parametrize("cron", ["61 * * * *", "* * * *", "TZ=Mars/Olympus * * * * *"])
def test_bad_cron_gets_400_naming_cron(emulator: EmulatorHandle, cron: str) -> None:
    from google.api_core import exceptions

    job = _job()
    with pytest.raises(exceptions.BadRequest, match="cron"):
        job.create_schedule(cron=cron, display_name="bad", max_run_count=1)


@pytest.mark.slow
def test_schedule_fires_exactly_max_run_count_runs_across_a_restart(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import aiplatform

    handle = start(env, seed=0)
    try:
        _connect(handle, monkeypatch)
        schedule = _job(max_trial_count=1, parallel_trial_count=1).create_schedule(
            cron="* * * * *", display_name="every-minute", max_run_count=2
        )
        name = schedule.resource_name
        deadline = time.monotonic() + 150
        while int(aiplatform.PipelineJobSchedule.get(name).gca_resource.started_run_count) < 1:
            assert time.monotonic() < deadline, "the first run never fired"
            time.sleep(1)
    finally:
        handle.stop()  # the emulator goes down between the two runs
    handle = start(env, seed=0)
    try:
        _connect(handle, monkeypatch)
        schedule = aiplatform.PipelineJobSchedule.get(name)
        deadline = time.monotonic() + 150
        while schedule.state.name != "COMPLETED":
            assert time.monotonic() < deadline, schedule.state.name
            time.sleep(1)
            schedule = aiplatform.PipelineJobSchedule.get(name)
        runs = aiplatform.PipelineJob.list(filter=f'schedule_name="{name}"')
        assert len(runs) == 2
        assert int(schedule.gca_resource.started_run_count) == 2
        assert sorted(r.resource_name.rsplit("-", 1)[-1] for r in runs) == ["1", "2"]
        for run in runs:  # the first was interrupted by the restart or finished before it
            deadline = time.monotonic() + 120
            while run.state.name in ("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING"):
                assert time.monotonic() < deadline
                time.sleep(1)
                run = aiplatform.PipelineJob.get(run.resource_name)
        last = aiplatform.PipelineJob.get(
            schedule.gca_resource.last_scheduled_run_response.run_response
        )
        assert last.state.name == "PIPELINE_STATE_SUCCEEDED"
    finally:
        handle.stop()
