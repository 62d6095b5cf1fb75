"""``kill -9`` of the emulator (a real ``hydra-vertex emulator`` process) at every point of a job,
then a restart on the same state directory: no finished work is lost, no process runs unrecorded,
none is left behind.

The exact places no timing can hit (between storing a trial and storing its pid, between two
trials, while cancelling) are reached with the test-only fault points of
``hydra_vertex.emulator.fault_points``: ``HYDRA_VERTEX_FAULT=<point>:die[:n]`` makes the emulator
SIGKILL itself there.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _helpers import CLI, IMAGE, Emulator, marked_processes, until

PARENT = "projects/test-project/locations/us-central1"
PARENT_LOCAL = "projects/local-project/locations/us-central1"
SHIM = Path(sys.executable).with_name("hydra-vertex-shim")
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


def _container(*args: str) -> dict[str, Any]:
    return {"image_uri": IMAGE, "command": [sys.executable, "fast_app.py", *args]}


def _tuning_job(max_trials: int, parallel: int, sleep: float) -> Any:
    from google.cloud.aiplatform_v1 import types

    command = [str(SHIM), "--search-space", "space.yaml", "--", sys.executable, "fast_app.py"]
    return types.HyperparameterTuningJob(
        display_name="restart",
        max_trial_count=max_trials,
        parallel_trial_count=parallel,
        study_spec=types.StudySpec(
            metrics=[{"metric_id": "value", "goal": "MINIMIZE"}],
            parameters=[
                {"parameter_id": "x", "double_value_spec": {"min_value": -5, "max_value": 10}},
                {"parameter_id": "y", "double_value_spec": {"min_value": 0, "max_value": 15}},
            ],
        ),
        trial_job_spec={
            "worker_pool_specs": [
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {
                        "image_uri": IMAGE,
                        "command": [*command, f"sleep={sleep}"],
                    },
                }
            ]
        },
    )


def _custom_job(name: str, sleep: float, gpus: int) -> Any:
    from google.cloud.aiplatform_v1 import types

    machine = {"machine_type": "n1-standard-4"}
    if gpus:
        machine.update(accelerator_type="NVIDIA_TESLA_T4", accelerator_count=gpus)  # type: ignore[dict-item]
    return types.CustomJob(
        display_name=name,
        job_spec={
            "worker_pool_specs": [
                {
                    "machine_spec": machine,
                    "replica_count": 1,
                    "container_spec": _container("x=1", "y=2", f"sleep={sleep}"),
                }
            ]
        },
    )


def _job_id(resource_name: str) -> str:
    return resource_name.rsplit("/", 1)[-1]


@pytest.mark.slow
def test_kill_9_at_every_point_loses_no_trial(tmp_path: Path) -> None:
    state = tmp_path / "state"
    emulator = Emulator(state)
    job = emulator.client.create_hyperparameter_tuning_job(
        parent=PARENT, hyperparameter_tuning_job=_tuning_job(12, 3, sleep=1.0)
    )
    job_id = _job_id(job.name)
    emulator.kill()  # during create: right after the create request returned

    # after a trial's process started, before its pid was stored
    Emulator(state, fault="process-started:die:2").died()
    unrecorded = set(marked_processes(job_id).values())
    assert unrecorded, "the trials started before the kill run on (their own sessions)"

    # a trial stored ACTIVE, its process not started yet: it is replaced, not counted
    Emulator(state, fault="trial-stored:die:2").died()
    Emulator(state, fault="trial-ended:die:2").died()  # between two trials

    emulator = Emulator(state)
    client = emulator.client

    def trial_running() -> bool:
        tuning = client.get_hyperparameter_tuning_job(name=job.name)
        active = {t.id for t in tuning.trials if t.state.name == "ACTIVE"}
        return bool(active & set(marked_processes(job_id).values()))

    until(trial_running, "a trial to run", emulator.proc)
    # a custom job holding both GPUs, long enough to outlive the restart
    first = client.create_custom_job(parent=PARENT, custom_job=_custom_job("retrain", 15, 2))
    until(
        lambda: client.get_custom_job(name=first.name).state.name == "JOB_STATE_RUNNING",
        "the custom job to run",
        emulator.proc,
    )
    emulator.kill()  # mid-trial, mid-job

    emulator = Emulator(state)
    try:
        client = emulator.client
        assert client.get_custom_job(name=first.name).state.name == "JOB_STATE_RUNNING"
        # asks for a GPU that the re-adopted custom job holds: it must wait for it
        second = client.create_custom_job(parent=PARENT, custom_job=_custom_job("after", 0, 1))
        refused = subprocess.run(
            [str(CLI), "emulator", "--state-dir", str(state), "--no-grpc"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 1 and "already using" in refused.stderr

        def ended(name: str) -> Any:
            get = (
                client.get_custom_job
                if "customJobs" in name
                else (client.get_hyperparameter_tuning_job)
            )
            found = get(name=name)
            return found if found.state.name in TERMINAL else None

        final = until(lambda: ended(job.name), "the tuning job to end", emulator.proc)
        first = until(lambda: ended(first.name), "the custom job to end", emulator.proc)
        second = until(lambda: ended(second.name), "the second custom job", emulator.proc)
        assert final.state.name == "JOB_STATE_SUCCEEDED", final.error.message
        succeeded = [t for t in final.trials if t.state.name == "SUCCEEDED"]
        assert len(succeeded) == 12
        assert len({t.id for t in final.trials}) == len(final.trials)
        assert (
            len({tuple((p.parameter_id, p.value) for p in t.parameters) for t in succeeded}) == 12
        )
        others = [t for t in final.trials if t.state.name != "SUCCEEDED"]
        # only a trial whose process never started can be lost; it is replaced, not counted
        assert all("interrupted" in t.infeasible_reason for t in others), others
        states = {t.id: t.state.name for t in final.trials}
        assert {states[tid] for tid in unrecorded} == {"SUCCEEDED"}, "found again and waited for"

        assert first.state.name == "JOB_STATE_SUCCEEDED", first.error.message
        log = (state / "runs" / _job_id(first.name) / "stdout.log").read_text()
        assert log.count("fast_app: started") == 1, "re-adopted, not run again"
        assert second.state.name == "JOB_STATE_SUCCEEDED", second.error.message
        assert second.start_time >= first.end_time, "its GPU was still held by the first job"
        for name in (job.name, first.name, second.name):
            assert not marked_processes(_job_id(name)), "no process is left behind"
    finally:
        emulator.stop()


def test_cancelling_on_restart_ends_cancelled(tmp_path: Path) -> None:
    state = tmp_path / "state"
    emulator = Emulator(state, fault="cancelling:die")
    job = emulator.client.create_custom_job(
        parent=PARENT, custom_job=_custom_job("long", 600, gpus=0)
    )
    job_id = _job_id(job.name)
    until(lambda: marked_processes(job_id), "the job's process", emulator.proc)
    with contextlib.suppress(Exception):  # the emulator may die before it answers
        emulator.client.cancel_custom_job(name=job.name)
    emulator.died()  # seen the cancel, killed nothing yet
    assert marked_processes(job_id)
    emulator = Emulator(state)
    try:

        def cancelled() -> Any:
            found = emulator.client.get_custom_job(name=job.name)
            return found if found.state.name in TERMINAL else None

        found = until(cancelled, "the job to end", emulator.proc)
        assert found.state.name == "JOB_STATE_CANCELLED"
        assert found.error.code == 1
        assert not marked_processes(job_id)
    finally:
        emulator.stop()


@pytest.mark.slow
def test_pipeline_killed_mid_tuning_resumes_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tune-and-retrain template on the digits example: ``kill -9`` of the emulator while its
    tuning job runs; after a restart the run resumes (the image is not built again, the launcher
    finds its tuning job, which kept its trials) and succeeds."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import pipeline_jobs

    from hydra_vertex.emulator import connect

    root = Path(__file__).resolve().parents[2]
    digits = root / "examples" / "digits"
    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    monkeypatch.setenv("HYDRA_VERTEX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(pipeline_jobs, "_JOB_WAIT_TIME", 1)  # the SDK's poll interval
    state = tmp_path / "state"

    def reconnect(emulator: Emulator) -> None:
        info = json.loads((state / "endpoint.json").read_text())
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", info["endpoint"])
        connect(state, project="local-project", location="us-central1")

    emulator = Emulator(state)
    reconnect(emulator)
    import yaml

    job = aiplatform.PipelineJob(
        display_name="digits",
        template_path=str(root / "pipelines" / "tune_and_retrain.json"),
        pipeline_root="gs://bucket/pipeline-root",
        parameter_values={
            "app_name": "digits",
            "app_source": str(digits),
            "app_command": ["python", "train.py"],
            "search_space": yaml.safe_load((digits / "search_space.yaml").read_text()),
            "project": "local-project",
            "staging_bucket": "gs://bucket/runs",
            "max_trial_count": 3,
            "parallel_trial_count": 1,
            "retrain_overrides": ["val_fraction=0.1"],
            "seed": 1,
        },
        enable_caching=False,
    )
    job.submit()

    def tuning_trial_active() -> Any:
        jobs = emulator.client.list_hyperparameter_tuning_jobs(parent=PARENT_LOCAL)
        return [j for j in jobs if any(t.state.name == "ACTIVE" for t in j.trials)]

    [tuning] = until(tuning_trial_active, "a trial of the pipeline's tuning job", emulator.proc)
    emulator.kill()  # mid-tuning

    emulator = Emulator(state)
    try:
        reconnect(emulator)
        until(
            lambda: (
                aiplatform.PipelineJob.get(job.resource_name).state.name
                not in ("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING")
            ),
            "the pipeline run to end",
            emulator.proc,
        )
        run = aiplatform.PipelineJob.get(job.resource_name)
        assert run.state.name == "PIPELINE_STATE_SUCCEEDED", run.error.message
        tasks = {t.task_name: t.state.name for t in run.task_details}
        assert set(tasks.values()) == {"SUCCEEDED"}, tasks
        [again] = emulator.client.list_hyperparameter_tuning_jobs(parent=PARENT_LOCAL)
        assert again.name == tuning.name, "the launcher found its tuning job again"
        assert again.state.name == "JOB_STATE_SUCCEEDED"
        assert sum(t.state.name == "SUCCEEDED" for t in again.trials) == 3
        events = [
            json.loads(line)
            for line in (state / "runs" / _job_id(run.resource_name) / "events.jsonl")
            .read_text()
            .splitlines()
        ]
        builds = [e for e in events if e["task"] == "build-image" and e["event"] == "start"]
        assert len(builds) == 1, "the image built before the kill is not built again"
        for name in (
            again.name,
            *(j.name for j in emulator.client.list_custom_jobs(parent=PARENT_LOCAL)),
        ):
            assert not marked_processes(_job_id(name)), "no process is left behind"
    finally:
        emulator.stop()
