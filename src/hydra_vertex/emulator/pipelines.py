"""Pipeline jobs: a compiled pipeline spec run by ``kfp.local`` in a process of its own.

- Create validates the spec (it must load with kfp) and the parameters (each must be declared
  by the spec's root; required ones must be given) and answers 400 naming the field otherwise.
- The run: ``pipeline_main`` in its own process group, with ``HYDRA_VERTEX_EMULATOR`` (+ token)
  so the components' Vertex calls come back here. Its pipeline root is the local backing of
  ``runtimeConfig.gcsOutputDirectory``/<job id>.
- Task details: each task's state (from kfp.local's per-task ``executor_output.json``), its output
  parameters as execution metadata (``output:<name>``, as Vertex shows them) and its artifacts;
  a root task carries the pipeline's outputs.
- Cancel kills the run's process group: the running component gets SIGTERM (``launch_tuning``
  then cancels its tuning job), and the job ends CANCELLED.
- Restart: a pipeline job that was running is not resumed (its process group is killed) and ends
  FAILED ("interrupted").
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra_vertex.emulator import executor
from hydra_vertex.emulator.router import ApiError
from hydra_vertex.emulator.runners import CANCELLED, StoredJobRunner
from hydra_vertex.emulator.store import Record, Store, now
from hydra_vertex.local_conventions import local_path

COLLECTION = "pipelineJobs"
TERMINAL = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")
POLL_SECONDS = 0.5


# -- validation -----------------------------------------------------------------------------------
def validate(job: dict[str, Any], where: str = "pipeline_job") -> None:
    """400 unless the spec loads with kfp and the parameter values fit its inputs."""
    spec = job.get("pipelineSpec")
    if not isinstance(spec, dict) or not spec:
        raise ApiError(400, f"{where}.pipeline_spec is required (a compiled pipeline, as JSON)")
    missing = [k for k in ("pipelineInfo", "root", "deploymentSpec") if k not in spec]
    if missing:
        raise ApiError(400, f"{where}.pipeline_spec is not a compiled pipeline: no {missing}")
    from kfp.components import load_component_from_text

    try:
        load_component_from_text(json.dumps(spec))
    except Exception as e:
        raise ApiError(400, f"{where}.pipeline_spec does not load with kfp: {e}") from None
    declared = (spec["root"].get("inputDefinitions") or {}).get("parameters") or {}
    runtime = job.get("runtimeConfig") or {}
    given = runtime.get("parameterValues") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ApiError(
            400,
            f"{where}.runtime_config.parameter_values: unknown parameter(s) {unknown}; the "
            f"pipeline declares {sorted(declared)}",
        )
    required = sorted(
        k
        for k, d in declared.items()
        if "defaultValue" not in d and not d.get("isOptional") and k not in given
    )
    if required:
        raise ApiError(
            400,
            f"{where}.runtime_config.parameter_values: missing required parameter(s) {required}",
        )
    root = runtime.get("gcsOutputDirectory", "")
    if not str(root).startswith("gs://"):
        raise ApiError(
            400, f"{where}.runtime_config.gcs_output_directory must be a gs:// URI, got {root!r}"
        )


def typed_parameters(spec: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Parameter values with the spec's types: proto-JSON carries every number as a double, and
    kfp refuses ``3.0`` for an integer input."""
    declared = (spec["root"].get("inputDefinitions") or {}).get("parameters") or {}
    out: dict[str, Any] = {}
    for key, value in values.items():
        kind = (declared.get(key) or {}).get("parameterType")
        if kind == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
            out[key] = int(value)
        elif kind == "NUMBER_DOUBLE" and isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
        else:
            out[key] = value
    return out


# -- task details --------------------------------------------------------------------------------
def _task_names(spec: dict[str, Any]) -> list[str]:
    return list(((spec.get("root") or {}).get("dag") or {}).get("tasks") or {})


def _to_gs(uri: str, local_root: Path, gs_root: str) -> str:
    text = str(uri)
    prefix = str(local_root)
    return gs_root.rstrip("/") + text[len(prefix) :] if text.startswith(prefix) else text


def task_details(
    spec: dict[str, Any], local_root: Path, gs_root: str, failed: bool
) -> list[dict[str, Any]]:
    """Task states and outputs from kfp.local's run directory (one run per job root)."""
    runs = sorted(p for p in local_root.glob("*/") if p.is_dir())
    run_dir = runs[-1] if runs else None
    out: list[dict[str, Any]] = []
    running_seen = False
    for i, name in enumerate(_task_names(spec), start=1):
        task_dir = run_dir / name if run_dir else None
        detail: dict[str, Any] = {"taskId": str(i), "taskName": name, "state": "PENDING"}
        result = task_dir / "executor_output.json" if task_dir else None
        if result is not None and result.is_file():
            detail["state"] = "SUCCEEDED"
            try:
                data = json.loads(result.read_text())
            except (OSError, ValueError):
                data = {}
            meta = {f"output:{k}": v for k, v in (data.get("parameterValues") or {}).items()}
            detail["execution"] = {"displayName": name, "state": "COMPLETE", "metadata": meta}
            artifacts = {}
            for key, value in (data.get("artifacts") or {}).items():
                artifacts[key] = {
                    "artifacts": [
                        {
                            "uri": _to_gs(a.get("uri", ""), local_root, gs_root),
                            "metadata": a.get("metadata") or {},
                        }
                        for a in value.get("artifacts", [])
                    ]
                }
            if artifacts:
                detail["outputs"] = artifacts
        elif task_dir is not None and task_dir.exists() and not running_seen:
            detail["state"] = "FAILED" if failed else "RUNNING"
            running_seen = True
        out.append(detail)
    return out


# -- the runner -----------------------------------------------------------------------------------
class PipelineRunner(StoredJobRunner):
    """Runs one pipeline job to its end; follows cancel requests; reflects task progress."""

    collection = COLLECTION

    def __init__(self, store: Store, job_id: str, endpoint: str, token: str) -> None:
        super().__init__(store, job_id)
        self.endpoint = endpoint
        self.token = token

    def _set_tasks(self, details: list[dict[str, Any]]) -> None:
        self.update(lambda r: r["resource"].update(jobDetail={"taskDetails": details}))

    def _state(self) -> str:
        rec = self.store.get(COLLECTION, self.job_id)
        return "" if rec is None else str(rec["resource"].get("state", ""))

    def run(self) -> None:
        rec = self.store.get(COLLECTION, self.job_id)
        if rec is None or rec["resource"].get("state") in TERMINAL:
            return
        if self.interrupted(rec, "PIPELINE_STATE_FAILED", "pipeline"):
            return
        if self._state() == "PIPELINE_STATE_CANCELLING":
            self.finish("PIPELINE_STATE_CANCELLED", CANCELLED)
            return
        res = rec["resource"]
        run_dir = self.store.run_dir(self.job_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        gs_root = f"{res['runtimeConfig']['gcsOutputDirectory'].rstrip('/')}/{self.job_id}"
        local_root = local_path(self.store.storage_root, gs_root)
        local_root.mkdir(parents=True, exist_ok=True)
        spec_path, params_path = run_dir / "pipeline_spec.json", run_dir / "parameters.json"
        result_path = run_dir / "result.json"
        spec_path.write_text(json.dumps(res["pipelineSpec"]))
        values = res["runtimeConfig"].get("parameterValues") or {}
        params_path.write_text(json.dumps(typed_parameters(res["pipelineSpec"], values)))
        result_path.unlink(missing_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_EMULATOR")},
            "HYDRA_VERTEX_EMULATOR": self.endpoint,
            "HYDRA_VERTEX_EMULATOR_TOKEN": self.token,
            "STORAGE_EMULATOR_HOST": self.endpoint,
        }
        argv = [
            sys.executable,
            "-m",
            "hydra_vertex.emulator.pipeline_main",
            str(spec_path),
            str(params_path),
            str(local_root),
            str(result_path),
        ]
        with open(run_dir / "pipeline.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=run_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        start = executor.proc_start(proc.pid)
        self.update(lambda r: r["internal"].update(pid=proc.pid, start=start))

        def running(r: Record) -> None:
            if r["resource"].get("state") == "PIPELINE_STATE_PENDING":
                r["resource"]["state"] = "PIPELINE_STATE_RUNNING"
                r["resource"]["startTime"] = r["resource"]["updateTime"] = now()

        self.update(running)
        spec = res["pipelineSpec"]
        last: list[dict[str, Any]] = []
        try:
            while proc.poll() is None:
                if self.stop_event.is_set():
                    return  # emulator stopping: the group is killed below
                if self._state() == "PIPELINE_STATE_CANCELLING":
                    executor.kill_group(proc.pid, proc)
                    details = task_details(spec, local_root, gs_root, failed=True)
                    for d in details:
                        if d["state"] in ("RUNNING", "FAILED"):
                            d["state"] = "CANCELLED"
                    self.finish(
                        "PIPELINE_STATE_CANCELLED",
                        CANCELLED,
                        jobDetail={"taskDetails": details},
                    )
                    return
                details = task_details(spec, local_root, gs_root, failed=False)
                if details != last:
                    last = details
                    self._set_tasks(details)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(POLL_SECONDS)
            self._finish_from(result_path, spec, local_root, gs_root, run_dir)
        finally:
            if proc.poll() is None:
                executor.kill_group(proc.pid, proc)

    def _finish_from(
        self,
        result_path: Path,
        spec: dict[str, Any],
        local_root: Path,
        gs_root: str,
        run_dir: Path,
    ) -> None:
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            result = {"status": "failed", "error": "the pipeline process ended without a result"}
        ok = result.get("status") == "succeeded"
        details = task_details(spec, local_root, gs_root, failed=not ok)
        name = ((spec.get("pipelineInfo") or {}).get("name")) or "pipeline"
        root_task = {
            "taskId": "0",
            "taskName": name,
            "state": "SUCCEEDED" if ok else "FAILED",
            "execution": {
                "displayName": name,
                "state": "COMPLETE" if ok else "FAILED",
                "metadata": {f"output:{k}": v for k, v in (result.get("outputs") or {}).items()},
            },
        }
        if ok:
            self.finish(
                "PIPELINE_STATE_SUCCEEDED", jobDetail={"taskDetails": [root_task, *details]}
            )
            return
        log_tail = executor.tail(run_dir / "pipeline.log", lines=15)
        message = f"{result.get('error', 'failed')}\n{log_tail}".strip()
        self.finish(
            "PIPELINE_STATE_FAILED",
            {"code": 9, "message": message},
            jobDetail={"taskDetails": [root_task, *details]},
        )
