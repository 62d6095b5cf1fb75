"""Reading a pipeline job's task details (``hydra_vertex.pipeline_runs``): the jobs its tasks
launched, why it failed, its outputs, the task running now. The jobs are the aiplatform_v1 protos,
parsed from the JSON the API answers with."""

from __future__ import annotations

import json
from typing import Any

from hydra_vertex import gcp_resources, pipeline_runs

TUNING = "projects/p/locations/l/hyperparameterTuningJobs/7"
RETRAIN = "projects/p/locations/l/customJobs/8"
COMPONENT = "system.ContainerExecution"


def _job(state: str, tasks: list[dict[str, Any]], root_outputs: dict[str, Any] | None = None) -> Any:
    from google.cloud.aiplatform_v1.types import PipelineJob

    root = {
        "taskId": "1", "taskName": "hydra-vertex-tune-and-retrain", "state": state.removeprefix("PIPELINE_STATE_"),
        "execution": {"schemaTitle": "system.DagExecution",
                      "metadata": {f"output:{k}": v for k, v in (root_outputs or {}).items()}},
    }
    details = [root] + [{"parentTaskId": "1", **t} for t in tasks]
    return PipelineJob.from_json(json.dumps({"name": "projects/p/locations/l/pipelineJobs/run-1", "state": state,
                                             "jobDetail": {"taskDetails": details}}))


def _task(name: str, state: str, *, outputs: dict[str, Any] | None = None, error: str = "",
          started: str = "2026-01-01T00:00:00Z", ended: str | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {
        "taskId": str(abs(hash(name)) % 10**9), "taskName": name, "state": state, "startTime": started,
        "execution": {"schemaTitle": COMPONENT, "metadata": {f"output:{k}": v for k, v in (outputs or {}).items()}},
    }
    if ended:
        task["endTime"] = ended
    if error:
        task["error"] = {"code": 9, "message": error}
    return task


def _resources(kind: str, name: str) -> str:
    return json.dumps({"resources": [{"resourceType": kind, "resourceUri": f"http://127.0.0.1:1/v1/{name}"}]})


def test_a_running_launcher_names_its_job_and_is_the_task_running() -> None:
    job = _job("PIPELINE_STATE_RUNNING", [
        _task("build-image", "SUCCEEDED", outputs={"Output": "img"}, ended="2026-01-01T00:00:01Z"),
        _task("launch-tuning", "RUNNING", outputs={"gcp_resources": _resources("HyperparameterTuningJob", TUNING)},
              started="2026-01-01T00:00:01Z"),
    ])
    assert pipeline_runs.launched(job, "launch-tuning", "HyperparameterTuningJob") == TUNING
    assert pipeline_runs.launched(job, "launch-tuning", "CustomJob") is None
    assert pipeline_runs.launched(job, "retrain", "CustomJob") is None
    assert pipeline_runs.running_task(job) == "launch-tuning"
    assert pipeline_runs.outputs(job) == {} and pipeline_runs.failure(job) is None
    assert pipeline_runs.task_states(job)[1:] == (("build-image", "SUCCEEDED"), ("launch-tuning", "RUNNING"))


def test_a_failed_run_says_why_with_the_first_failed_tasks_error() -> None:
    job = _job("PIPELINE_STATE_FAILED", [
        _task("launch-tuning", "FAILED", error="no trial succeeded (3 trials: 3 INFEASIBLE)\nits log: /x/2.log",
              outputs={"gcp_resources": _resources("HyperparameterTuningJob", TUNING)}, ended="2026-01-01T00:00:05Z"),
        _task("retrain", "FAILED", error="a later failure", ended="2026-01-01T00:00:09Z"),
    ])
    assert pipeline_runs.failure(job) == "no trial succeeded (3 trials: 3 INFEASIBLE)\nits log: /x/2.log"
    assert pipeline_runs.launched(job, "launch-tuning", "HyperparameterTuningJob") == TUNING
    assert pipeline_runs.running_task(job) is None


def test_a_succeeded_runs_outputs_come_from_its_root_task() -> None:
    outputs = {"tuning_job": TUNING, "retrain_job": RETRAIN, "best_value": 0.25, "best_overrides": ["lr=0.1"]}
    job = _job("PIPELINE_STATE_SUCCEEDED", [_task("retrain", "SUCCEEDED", ended="2026-01-01T00:00:09Z")], outputs)
    assert pipeline_runs.outputs(job) == outputs
    assert pipeline_runs.state(job) == "PIPELINE_STATE_SUCCEEDED" and pipeline_runs.failure(job) is None


def test_gcp_resources_names_read_only_what_they_should() -> None:
    text = gcp_resources.dumps("CustomJob", RETRAIN, "https://l-aiplatform.example/v1/")
    assert gcp_resources.names(text) == [RETRAIN] == gcp_resources.names(text, "CustomJob")
    assert gcp_resources.names(text, "HyperparameterTuningJob") == []
    assert gcp_resources.names("not json") == [] == gcp_resources.names('{"resources": 3}')
