"""A pipeline run's tasks in DAG order, from the run as proto-JSON (the emulator's stored resource,
or ``PipelineJob.to_json`` of what the API returned): one rule for the console and the CLI.

Standard library only; it reads defensively: ``taskDetails`` may carry nested tasks
(``parentTaskId``) at every level, or none; the spec may be missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

JOB_NAME = re.compile(
    r"^projects/[^/]+/locations/[^/]+/(hyperparameterTuningJobs|customJobs)/[^/]+$"
)


def dag_order(spec: Mapping[str, Any] | None) -> list[str]:
    """The root DAG's task names in dependency order (Kahn's algorithm; ties in the spec's own
    order), from a compiled pipeline spec (``root.dag.tasks[*].dependentTasks``)."""
    tasks = ((spec or {}).get("root") or {}).get("dag", {}).get("tasks") or {}
    if not isinstance(tasks, Mapping):
        return []
    names = list(tasks)
    needs = {
        n: [d for d in (tasks[n] or {}).get("dependentTasks") or [] if d in tasks] for n in names
    }
    done: list[str] = []
    while len(done) < len(names):
        ready = [n for n in names if n not in done and all(d in done for d in needs[n])]
        if not ready:  # a cycle cannot compile; keep what is left in the spec's order
            ready = [n for n in names if n not in done]
        done.append(ready[0])
    return done


def _id(task: Mapping[str, Any]) -> str:
    return str(task.get("taskId", ""))


def _start(task: Mapping[str, Any]) -> str:
    return str(task.get("startTime") or "~")  # not started: after the started ones


def ordered_tasks(run: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """``(depth, task detail)`` of a run's tasks: the root (depth 0), then each level's tasks in
    DAG order (by start time where the spec does not order them), each task's children right
    after it."""
    details = [dict(t) for t in ((run.get("jobDetail") or {}).get("taskDetails") or [])]
    if not details:
        return []
    order = {name: i for i, name in enumerate(dag_order(run.get("pipelineSpec")))}
    ids = {_id(t) for t in details}
    children: dict[str, list[dict[str, Any]]] = {}
    tops: list[dict[str, Any]] = []
    for t in details:
        parent = str(t.get("parentTaskId") or "")
        if parent and parent in ids:
            children.setdefault(parent, []).append(t)
        else:
            tops.append(t)
    if len(tops) > 1:  # no parents recorded: the root is the one that is no DAG task
        roots = [t for t in tops if t.get("taskName") not in order]
        if len(roots) == 1:
            children.setdefault(_id(roots[0]), []).extend(t for t in tops if t is not roots[0])
            tops = roots

    def key(t: Mapping[str, Any]) -> tuple[int, str, str]:
        return (order.get(str(t.get("taskName")), len(order)), _start(t), _id(t).zfill(12))

    out: list[tuple[int, dict[str, Any]]] = []

    def walk(items: Sequence[dict[str, Any]], depth: int) -> None:
        for t in sorted(items, key=key):
            out.append((depth, t))
            walk(children.get(_id(t), []), depth + 1)

    walk(tops, 0)
    return out


def outputs(task: Mapping[str, Any]) -> dict[str, Any]:
    """A task's output parameters (``execution.metadata["output:NAME"]``, as Vertex shows them)."""
    metadata = ((task.get("execution") or {}).get("metadata")) or {}
    if not isinstance(metadata, Mapping):
        return {}
    prefix = "output:"
    return {str(k)[len(prefix) :]: v for k, v in metadata.items() if str(k).startswith(prefix)}


def created_jobs(run: Mapping[str, Any]) -> list[str]:
    """The tuning and custom jobs a run's task outputs name (once those tasks have ended):
    tuning jobs first."""
    names: list[str] = []
    for _, task in ordered_tasks(run):
        for value in outputs(task).values():
            if isinstance(value, str) and JOB_NAME.match(value) and value not in names:
                names.append(value)
    return sorted(names, key=lambda n: "/hyperparameterTuningJobs/" not in n)
