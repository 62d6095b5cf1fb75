"""Task details of pipeline jobs at every level, with Kubeflow's own kfp v2 test pipelines
(``kfp_pipelines/``, see VENDORED.md) compiled and submitted through the unchanged
``aiplatform.PipelineJob``: conditions, loops with their iterations, exit handlers and nested
pipelines each get a task with its parent, and every task ends when the run ends. Container
components are refused at create without a Docker engine; with the ``docker`` package and no
engine, the pipeline process hands them to kfp.local's DockerRunner."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hydra_vertex.emulator import EmulatorHandle, connect, pipeline_tasks, start
from hydra_vertex.emulator.pipelines import docker_unavailable

KFP_PIPELINES = Path(__file__).parent / "kfp_pipelines"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED", "NOT_TRIGGERED"}


def _compile(tmp_path: Path, module: str, function: str) -> Path:
    from kfp import compiler

    spec = importlib.util.spec_from_file_location(
        f"kfp_pipelines_{module}", KFP_PIPELINES / f"{module}.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / f"{module}.json"
    compiler.Compiler().compile(pipeline_func=getattr(mod, function), package_path=str(out))
    return out


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorHandle]:
    from google.cloud.aiplatform import pipeline_jobs

    with start(tmp_path / "state") as handle:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", handle.endpoint)
        monkeypatch.setattr(pipeline_jobs, "_JOB_WAIT_TIME", 1)  # the SDK's poll interval
        connect(handle.state_dir, project="local-project", location="us-central1")
        yield handle


def _job(template: Path, **params: Any) -> Any:
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name=template.stem.replace("_", "-"),
        template_path=str(template),
        pipeline_root="gs://bucket/pipeline-root",
        parameter_values=params,
        enable_caching=False,
    )


def _run(tmp_path: Path, module: str, function: str) -> tuple[dict[str, Any], Any]:
    """Compile a vendored pipeline, submit it, wait for its end; its spec and the job as read
    back with ``PipelineJob.get``."""
    from google.cloud import aiplatform

    template = _compile(tmp_path, module, function)
    job = _job(template)
    job.submit()
    with contextlib.suppress(RuntimeError):  # raised when the job failed: the tests look at it
        job.wait()
    return json.loads(template.read_text()), aiplatform.PipelineJob.get(job.resource_name)


def _paths(details: list[Any]) -> dict[str, Any]:
    """Each task by its path of task names from the root task (which is ``""``)."""
    by_id = {d.task_id: d for d in details}
    out = {}
    for d in details:
        names, node = [], d
        while node.parent_task_id:
            assert node.parent_task_id in by_id, f"{node.task_name}: unknown parent"
            names.append(node.task_name)
            node = by_id[node.parent_task_id]
        out["/".join(reversed(names))] = d
    return out


def _expected(spec: dict[str, Any], paths: dict[str, Any]) -> set[str]:
    """The paths the spec says a finished run has: every task at every level; a loop that ran
    has one ``<loop>-iteration-<i>`` task per item, each holding the loop body's tasks."""
    components = spec["components"]
    defaults = {
        k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()
    }

    def items(task: dict[str, Any]) -> int:
        source = task["parameterIterator"]["items"]
        if "raw" in source:
            return len(json.loads(source["raw"]))
        name = task["inputs"]["parameters"][source["inputParameter"]]["componentInputParameter"]
        return len(defaults[name])

    def walk(dag: dict[str, Any], prefix: str) -> Iterator[str]:
        for name, task in dag["tasks"].items():
            path = f"{prefix}{name}"
            yield path
            body = components[task["componentRef"]["name"]].get("dag")
            if body is None:
                continue
            if "parameterIterator" not in task:
                yield from walk(body, f"{path}/")
            elif paths[path].state.name == "SUCCEEDED":
                for i in range(items(task)):
                    yield f"{path}/{name}-iteration-{i}"
                    yield from walk(body, f"{path}/{name}-iteration-{i}/")

    return {"", *walk(spec["root"]["dag"], "")}


@pytest.mark.slow
def test_loops_and_conditions_give_every_task_with_its_parent(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    spec, job = _run(tmp_path, "if_elif_else_complex", "lucky_number_pipeline")
    assert job.state.name == "PIPELINE_STATE_SUCCEEDED"
    details = job.task_details
    paths = _paths(details)
    assert set(paths) == _expected(spec, paths)
    assert {d.state.name for d in details} <= TERMINAL
    assert paths[""].task_name == "lucky-number-pipeline"
    assert paths[""].state.name == "SUCCEEDED"
    for path, d in paths.items():
        assert d.end_time, path
        if d.state.name == "SUCCEEDED":
            assert d.start_time and d.start_time <= d.end_time, path
    # three iterations; in each, exactly one branch of If/Elif/Else ran, and the number it drew
    iterations = [
        p for p in paths if p.startswith("for-loop-1/for-loop-1-iteration-") and p.count("/") == 1
    ]
    assert len(iterations) == 3
    numbers = []
    for it in iterations:
        [branches] = [
            p for p in paths if p.startswith(f"{it}/condition-branches-") and p.count("/") == 2
        ]
        ran = [
            p
            for p in paths
            if p.startswith(f"{branches}/")
            and p.count("/") == 3
            and paths[p].state.name == "SUCCEEDED"
        ]
        assert len(ran) == 1, ran
        numbers.append(paths[f"{it}/int-0-to-9999-func"].execution.metadata["output:Output"])
    assert all(0 <= n <= 9999 for n in numbers)
    assert paths["print-ints"].state.name == "SUCCEEDED"
    # the drumroll condition holds on the last trial only
    drumrolls = [
        p
        for p in paths
        if p.endswith("/print-and-return")
        and "condition-2/condition-3" in p
        and paths[p].state.name == "SUCCEEDED"
    ]
    assert drumrolls == [
        "for-loop-1/for-loop-1-iteration-2/condition-2/condition-3/print-and-return"
    ]


@pytest.mark.slow
def test_exit_handler_and_failed_task_end_with_clean_errors(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    spec, job = _run(tmp_path, "pipeline_as_exit_task", "my_pipeline")
    assert job.state.name == "PIPELINE_STATE_FAILED"
    message = job.gca_resource.error.message
    assert message.splitlines()[0] == "task fail-op failed: Task failed. (exit code 1)"
    assert "\x1b" not in message and "Traceback" not in message
    paths = _paths(job.task_details)
    assert set(paths) == _expected(spec, paths)
    states = {p: d.state.name for p, d in paths.items()}
    assert states == {
        "": "FAILED",
        "exit-handler-1": "FAILED",
        "exit-handler-1/fail-op": "FAILED",
        "exit-handler-1/print-op": "SUCCEEDED",
        "conditional-notification": "SUCCEEDED",  # the exit task: a nested pipeline
        "conditional-notification/get-run-state": "SUCCEEDED",
        "conditional-notification/condition-1": "SUCCEEDED",
        "conditional-notification/condition-1/print-op": "SUCCEEDED",
    }
    failed = paths["exit-handler-1/fail-op"].error.message
    line, log = failed.splitlines()
    assert line == "Task failed. (exit code 1)"
    assert "Task failed." in Path(log.removeprefix("its log: ")).read_text()
    assert "[fail-op]" in paths["exit-handler-1"].error.message
    run_state = paths["conditional-notification/get-run-state"].execution.metadata
    assert run_state["output:Output"] == "FAILED"


@pytest.mark.skipif(docker_unavailable() is None, reason="a Docker engine is reachable here")
@pytest.mark.parametrize(
    ("module", "function", "named"),
    [
        (
            "pipeline_in_pipeline_complex",
            "my_pipeline",
            [
                "(component 'comp-print-op2')",
                "(component 'comp-print-op')",
                "task 'for-loop-2/inner-pipeline/condition-",
            ],
        ),
        (
            "pipeline_with_dynamic_custom_training_job",
            "pipeline",
            ["task 'custom-training-job' (component 'comp-custom-training-job')"],
        ),
    ],
    ids=["container-components-in-nested-pipelines", "google-cloud-pipeline-components-op"],
)
def test_container_components_are_refused_without_docker(
    emulator: EmulatorHandle, tmp_path: Path, module: str, function: str, named: list[str]
) -> None:
    from google.api_core import exceptions
    from google.cloud import aiplatform

    template = _compile(tmp_path, module, function)
    params = {"project": "local-project", "location": "us-central1"} if "custom" in module else {}
    with pytest.raises(exceptions.BadRequest) as e:
        _job(template, **params).submit()
    text = str(e.value)
    for needle in [
        *named,
        "no Docker engine is reachable",
        "SubprocessRunner runs lightweight Python components only",
    ]:
        assert needle in text
    assert aiplatform.PipelineJob.list() == []


@pytest.mark.skipif(importlib.util.find_spec("docker") is None, reason="no docker package")
@pytest.mark.skipif(docker_unavailable() is None, reason="a Docker engine is reachable here")
def test_the_pipeline_process_hands_container_components_to_the_docker_runner(
    tmp_path: Path,
) -> None:
    """Past the create check (as when an engine answered), a run gives lightweight components
    to the SubprocessRunner and container components to kfp.local's DockerRunner: with no engine,
    the container task fails with the Docker client's own error, and says so."""
    from hydra_vertex.emulator import pipeline_events

    template = _compile(tmp_path, "pipeline_in_pipeline_complex", "my_pipeline")
    (tmp_path / "params.json").write_text("{}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hydra_vertex.emulator.pipeline_main",
            str(template),
            str(tmp_path / "params.json"),
            str(tmp_path / "root"),
            str(tmp_path / "result.json"),
            str(tmp_path / "events.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    events = pipeline_events.read(tmp_path / "events.jsonl")
    ends = {
        (e["scope"], e["task"]): e for e in events if e["event"] == "end" and e["kind"] == "task"
    }
    assert ends[("", "print-op1")]["state"] == "SUCCEEDED"
    docker = [e for e in ends.values() if e["component"] in ("comp-print-op2", "comp-print-op")]
    assert docker and all(e["state"] == "FAILED" for e in docker)
    assert all(e["error"].startswith("DockerException: ") for e in docker), docker
    assert "\x1b" not in json.dumps(events)


# -- details from events, no processes ------------------------------------------------------------
def _exit_task_spec(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads(_compile(tmp_path, "pipeline_as_exit_task", "my_pipeline").read_text()))


def _event(
    event: str, task: str, component: str, kind: str = "task", **extra: Any
) -> dict[str, Any]:
    return {
        "event": event,
        "kind": kind,
        "scope": "",
        "task": task,
        "component": component,
        "time": f"2030-01-01T00:00:0{len(task) % 10}Z",
        **extra,
    }


def _states(details: list[dict[str, Any]]) -> dict[str, str]:
    by_id = {d["taskId"]: d for d in details}
    out = {}
    for d in details:
        names, node = [], d
        while node.get("parentTaskId"):
            names.append(node["taskName"])
            node = by_id[node["parentTaskId"]]
        out["/".join(reversed(names))] = d["state"]
    return out


_BODY = [
    _event("start", "exit-handler-1", "comp-exit-handler-1", "dag"),
    _event("start", "print-op", "comp-print-op"),
    _event(
        "end",
        "print-op",
        "comp-print-op",
        state="SUCCEEDED",
        outputs={"parameters": {}, "artifacts": {}},
    ),
    _event("start", "fail-op", "comp-fail-op"),
]


def test_details_while_running_and_after_cancel(tmp_path: Path) -> None:
    spec = _exit_task_spec(tmp_path)
    running = pipeline_tasks.Run("job-1", "p", "running", "2030-01-01T00:00:00Z")
    details = pipeline_tasks.details(spec, _BODY, running)
    assert details[0]["taskName"] == "p"
    assert _states(details) == {
        "": "RUNNING",
        "exit-handler-1": "RUNNING",
        "exit-handler-1/print-op": "SUCCEEDED",
        "exit-handler-1/fail-op": "RUNNING",
        "conditional-notification": "PENDING",
        "conditional-notification/get-run-state": "PENDING",
        "conditional-notification/condition-1": "PENDING",
        "conditional-notification/condition-1/print-op": "PENDING",
    }
    cancelled = pipeline_tasks.Run(
        "job-1", "p", "cancelled", "2030-01-01T00:00:00Z", "2030-01-01T00:01:00Z"
    )
    after = pipeline_tasks.details(spec, _BODY, cancelled)
    assert [d["taskId"] for d in after] == [d["taskId"] for d in details]  # ids are stable
    assert all(d["state"] in TERMINAL and d.get("endTime") for d in after)
    states = _states(after)
    assert states["exit-handler-1/print-op"] == "SUCCEEDED"
    assert {s for p, s in states.items() if p != "exit-handler-1/print-op"} == {"CANCELLED"}
    failed = pipeline_tasks.Run(
        "job-1", "p", "failed", "2030-01-01T00:00:00Z", "2030-01-01T00:01:00Z"
    )
    states = _states(pipeline_tasks.details(spec, _BODY, failed))
    assert states["exit-handler-1/fail-op"] == "FAILED"  # caught running when the run ended
    assert states["conditional-notification/get-run-state"] == "NOT_TRIGGERED"


def test_details_render_through_the_proto(tmp_path: Path) -> None:
    """Every field the details use is a ``PipelineTaskDetail`` field (unknown fields would 400)."""
    from google.cloud.aiplatform_v1 import types

    spec = _exit_task_spec(tmp_path)
    artifact = {"name": "model", "uri": "/r/m", "schemaTitle": "system.Model", "metadata": {"a": 1}}
    events = [
        _event("start", "fail-op", "comp-fail-op"),
        _event(
            "end",
            "fail-op",
            "comp-fail-op",
            state="FAILED",
            error="ValueError: x (exit code 1)",
            outputs={"parameters": {"n": 3}, "artifacts": {"model": [artifact]}},
        ),
    ]
    run = pipeline_tasks.Run(
        "job-1", "p", "failed", "2030-01-01T00:00:00Z", "2030-01-01T00:01:00Z", {"out": 1}
    )
    details = pipeline_tasks.details(spec, events, run, lambda uri: "gs://b" + uri)
    msgs = [
        types.PipelineTaskDetail.from_json(json.dumps(d), ignore_unknown_fields=False)
        for d in details
    ]
    [failed] = [m for m in msgs if m.task_name == "fail-op"]
    assert failed.outputs["model"].artifacts[0].uri == "gs://b/r/m"
    assert failed.execution.metadata["output:n"] == 3
    assert failed.error.message == "ValueError: x (exit code 1)"
    assert failed.execution.schema_title == pipeline_tasks.CONTAINER_EXECUTION
    assert msgs[0].execution.metadata["output:out"] == 1
