"""A pipeline job's tasks: the compiled spec as a tree, and its ``taskDetails`` at any moment.

The tree comes from the compiled spec (``root.dag.tasks``, and the ``dag`` of every component a
task uses, at every level): components, DAG tasks (a nested pipeline, a condition, the branches of
``dsl.If/Elif/Else``, an exit handler's body) and loops (a task with an iterator; its body is a
DAG that runs once per item). What happened comes from the run's task events
(:mod:`~hydra_vertex.emulator.pipeline_events`); the two meet on kfp.local's own keys: the *scope*
(the loop iterations a task sits in, kfp.local's nested pipeline resource name), the component
name and the task name.

``details(...)`` renders ``PipelineTaskDetail`` JSON (see docs/emulator.md for the exact shape):

- a root task named after the pipeline; every other task has ``parentTaskId``: the DAG, loop or
  loop iteration it sits in. A loop's iterations are tasks ``<loop>-iteration-<i>`` under it.
- ``taskId``: stable across updates and restarts (a hash of the job id and the task's path).
- states: PENDING until the task starts, RUNNING, then SUCCEEDED / FAILED. When the run ends,
  tasks that never started end NOT_TRIGGERED (a condition that was false, a task after a failed
  one: their trigger policy was not met), or CANCELLED when the run was cancelled; a task caught
  running when the run ended is CANCELLED (cancel) or FAILED. Nothing is left PENDING or RUNNING
  after a terminal run.
- ``execution``: ``schemaTitle`` ``system.ContainerExecution`` or ``system.DagExecution``, the
  state, and output parameters as ``output:<name>`` metadata (as Vertex shows them; while a task
  runs, and after it failed, those it has written so far: a launcher's ``gcp_resources``);
  ``outputs``: artifacts with ``gs://`` URIs.
- ``error`` of a failed task: the deciding line of its log, then its log's path; a failed DAG
  names its failed tasks (Vertex's wording).

Pure functions over JSON; no kfp import, except to classify container commands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TERMINAL_TASK_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED", "NOT_TRIGGERED")
CONTAINER_EXECUTION = "system.ContainerExecution"
DAG_EXECUTION = "system.DagExecution"
_EXECUTION_STATE = {
    "RUNNING": "RUNNING",
    "SUCCEEDED": "COMPLETE",
    "FAILED": "FAILED",
    "CANCELLED": "CANCELLED",
    "SKIPPED": "CACHED",
}
_RUN_STATE = {
    "running": "RUNNING",
    "succeeded": "SUCCEEDED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
}


@dataclass
class Task:
    """One task of the compiled spec. ``kind``: ``task`` (a component run by an executor),
    ``dag`` (its component has a DAG) or ``loop`` (an iterator over a DAG body)."""

    name: str
    component: str
    kind: str
    path: str
    children: list[Task] = field(default_factory=list)


def tree(spec: Mapping[str, Any]) -> list[Task]:
    """The root DAG's tasks, each with its children, in the spec's order."""
    components = spec.get("components") or {}

    def dag_tasks(dag: Mapping[str, Any], prefix: str, depth: int) -> list[Task]:
        if depth > 64:  # a compiled spec cannot nest this deep; a cycle would
            raise ValueError("the pipeline spec's DAGs nest more than 64 levels deep")
        out = []
        for name, spec_task in (dag.get("tasks") or {}).items():
            component = str((spec_task.get("componentRef") or {}).get("name", ""))
            body = (components.get(component) or {}).get("dag")
            looped = "parameterIterator" in spec_task or "artifactIterator" in spec_task
            kind = "loop" if looped and body is not None else "dag" if body is not None else "task"
            path = f"{prefix}{name}"
            task = Task(name, component, kind, path)
            if body is not None:
                task.children = dag_tasks(body, f"{path}/", depth + 1)
            out.append(task)
        return out

    return dag_tasks((spec.get("root") or {}).get("dag") or {}, "", 0)


def walk(tasks: Iterable[Task]) -> Iterable[Task]:
    """Every task, each before its children."""
    for task in tasks:
        yield task
        yield from walk(task.children)


# -- components that need a container ------------------------------------------------------------
def container_tasks(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(task path, component name)`` of every task whose executor is a container that kfp.local's
    SubprocessRunner refuses: a container component (``dsl.container_component``,
    ``dsl.ContainerSpec``, google-cloud-pipeline-components ops) or a containerized Python
    component. Lightweight Python components and importers run as subprocesses."""
    components = spec.get("components") or {}
    executors = ((spec.get("deploymentSpec") or {}).get("executors")) or {}
    out = []
    for task in walk(tree(spec)):
        if task.kind != "task":
            continue
        label = (components.get(task.component) or {}).get("executorLabel", "")
        container = (executors.get(label) or {}).get("container")
        command = [*(container or {}).get("command", []), *(container or {}).get("args", [])]
        if container is not None and not lightweight_python(command):
            out.append((task.path, task.component))
    return out


def lightweight_python(command: Sequence[str]) -> bool:
    """True if kfp.local's SubprocessRunner runs an executor with this command and args: it runs
    kfp's executor module on inline code (the test kfp.local's SubprocessTaskHandler makes)."""
    from kfp.dsl import component_factory

    containerized = list(component_factory.CONTAINERIZED_PYTHON_COMPONENT_COMMAND)
    if list(command[: len(containerized)]) == containerized:
        return False
    return any(component_factory.EXECUTOR_MODULE in str(part) for part in command)


# -- task details --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """What the details are rendered for: the job, how far the run is, its times and outputs.
    ``outcome``: ``running``, ``succeeded``, ``failed`` or ``cancelled``."""

    job_id: str
    pipeline_name: str
    outcome: str
    start_time: str | None = None
    end_time: str | None = None
    outputs: Mapping[str, Any] = field(default_factory=dict)


def task_id(job_id: str, path: str) -> str:
    """A task's id: stable for the job and the task's path (int64, as Vertex's are)."""
    return str(int(hashlib.sha256(f"{job_id}\0{path}".encode()).hexdigest()[:15], 16))


def _iteration_scope(scope: str, name: str) -> str:
    return f"{scope}/{name}" if scope else name


def details(
    spec: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    run: Run,
    to_gs: Callable[[str], str] = str,
) -> list[dict[str, Any]]:
    """``taskDetails`` for ``spec`` given the run's task ``events``: the root task first, then
    every task after its parent (loop iterations in order)."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for ev in events:
        key = (str(ev.get("scope", "")), str(ev.get("component", "")), str(ev.get("task", "")))
        slot = seen.setdefault(key, {})
        slot[str(ev.get("event"))] = ev
    root_id = task_id(run.job_id, "")
    root = {
        "taskId": root_id,
        "taskName": run.pipeline_name,
        "state": _RUN_STATE.get(run.outcome, "RUNNING"),
        "execution": _execution(
            run.pipeline_name, DAG_EXECUTION, _RUN_STATE.get(run.outcome, "RUNNING"), run.outputs
        ),
    }
    _times(root, run.start_time, run.end_time if run.outcome != "running" else None, run)
    out = [root]
    children: dict[str, list[dict[str, Any]]] = {}

    def emit(tasks: list[Task], scope: str, parent: str, prefix: str) -> None:
        for task in tasks:
            detail = _detail(task, seen.get((scope, task.component, task.name), {}), run, to_gs)
            path = f"{prefix}{task.name}"
            detail.update(taskId=task_id(run.job_id, path), parentTaskId=parent)
            out.append(detail)
            children.setdefault(parent, []).append(detail)
            if task.kind == "dag":
                emit(task.children, scope, detail["taskId"], f"{path}/")
            elif task.kind == "loop":
                for index, iteration in _iterations(seen, scope, task):
                    it_name = f"{task.name}-iteration-{index}"
                    it_task = Task(it_name, task.component, "dag", f"{task.path}/{it_name}")
                    it = _detail(it_task, iteration, run, to_gs)
                    it_path = f"{path}/{it_name}"
                    it.update(taskId=task_id(run.job_id, it_path), parentTaskId=detail["taskId"])
                    out.append(it)
                    children.setdefault(detail["taskId"], []).append(it)
                    emit(
                        task.children,
                        _iteration_scope(scope, it_name),
                        it["taskId"],
                        f"{it_path}/",
                    )

    emit(tree(spec), "", root_id, "")
    for detail in out:  # a failed DAG names its failed tasks, as Vertex does
        if detail["state"] == "FAILED" and "error" not in detail:
            below = children.get(str(detail["taskId"]), [])
            failed = [str(c["taskName"]) for c in below if c["state"] == "FAILED"]
            if failed:
                names = ", ".join(failed)
                detail["error"] = {
                    "code": 9,
                    "message": f"The DAG failed because some tasks failed. The failed tasks are: "
                    f"[{names}].",
                }
    return out


def _iterations(
    seen: Mapping[tuple[str, str, str], dict[str, Any]], scope: str, loop: Task
) -> list[tuple[int, dict[str, Any]]]:
    prefix = f"{loop.name}-iteration-"
    found = []
    for (ev_scope, component, name), slot in seen.items():
        if ev_scope == scope and component == loop.component and name.startswith(prefix):
            index = name[len(prefix) :]
            if index.isdigit():
                found.append((int(index), slot))
    return sorted(found, key=lambda item: item[0])


def _detail(
    task: Task, slot: Mapping[str, Any], run: Run, to_gs: Callable[[str], str]
) -> dict[str, Any]:
    start, end = slot.get("start"), slot.get("end")
    if end is not None:
        state = str(end.get("state", "FAILED"))
    elif start is not None:
        state = {"running": "RUNNING", "cancelled": "CANCELLED"}.get(run.outcome, "FAILED")
    else:
        state = {"running": "PENDING", "cancelled": "CANCELLED"}.get(run.outcome, "NOT_TRIGGERED")
    detail: dict[str, Any] = {"taskName": task.name, "state": state}
    started = str(start["time"]) if start is not None else None
    ended = str(end["time"]) if end is not None else None
    if ended is None and state in TERMINAL_TASK_STATES:
        ended = run.end_time
    _times(detail, started, ended, run)
    outputs = (end or {}).get("outputs") or {}
    # output parameters written so far (a launcher's gcp_resources while it runs, or after it
    # failed), then what the task returned
    parameters = {
        **((slot.get("files") or {}).get("parameters") or {}),
        **(outputs.get("parameters") or {}),
    }
    if start is not None:
        schema = DAG_EXECUTION if task.kind != "task" else CONTAINER_EXECUTION
        detail["execution"] = _execution(task.name, schema, state, parameters)
    artifacts = {
        name: {
            "artifacts": [
                {
                    "displayName": str(a.get("name") or name),
                    "uri": to_gs(str(a.get("uri", ""))),
                    "schemaTitle": str(a.get("schemaTitle", "")),
                    "metadata": a.get("metadata") or {},
                }
                for a in items
            ]
        }
        for name, items in (outputs.get("artifacts") or {}).items()
    }
    if artifacts:
        detail["outputs"] = artifacts
    error = (end or {}).get("error")
    if state == "FAILED" and error:
        detail["error"] = {"code": 9, "message": str(error)}
    elif state == "FAILED" and end is None:
        detail["error"] = {"code": 9, "message": "the pipeline process ended while it ran"}
    elif state == "CANCELLED":
        detail["error"] = {"code": 1, "message": "CANCELED"}
    return detail


def _times(detail: dict[str, Any], started: str | None, ended: str | None, run: Run) -> None:
    created = started or ended or run.start_time
    if created:
        detail["createTime"] = created
    if started:
        detail["startTime"] = started
    if ended:
        detail["endTime"] = ended
    status = []
    if started:
        status.append({"updateTime": started, "state": "RUNNING"})
    if ended and detail["state"] != "RUNNING":
        status.append({"updateTime": ended, "state": detail["state"]})
    if status:
        detail["pipelineTaskStatus"] = status


def _execution(
    name: str, schema: str, state: str, parameters: Mapping[str, Any]
) -> dict[str, Any]:
    execution: dict[str, Any] = {"displayName": name, "schemaTitle": schema}
    if state in _EXECUTION_STATE:
        execution["state"] = _EXECUTION_STATE[state]
    execution["metadata"] = {f"output:{k}": v for k, v in parameters.items()}
    return execution


def first_failure(details_: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """``(task name, error message)`` of the component task that failed first, if any."""
    failed = [
        d
        for d in details_
        if d.get("state") == "FAILED"
        and (d.get("execution") or {}).get("schemaTitle") == CONTAINER_EXECUTION
        and d.get("error")
    ]
    if not failed:
        return None
    first = min(failed, key=lambda d: str(d.get("endTime", "")))
    return str(first["taskName"]), str(first["error"]["message"])
