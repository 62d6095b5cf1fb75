"""Pipeline jobs: a compiled pipeline spec run by ``kfp.local`` in a process of its own.

- Create validates the spec (it must load with kfp) and the parameters (each must be declared
  by the spec's root; required ones must be given) and answers 400 naming the field otherwise.
- The run: ``pipeline_main`` in its own process group, forked from a warm server that has kfp and
  the clients imported (:mod:`~hydra_vertex.emulator.forkserver`; it forks each lightweight
  component in turn), with ``HYDRA_VERTEX_EMULATOR`` (+ token) so the components' Vertex calls
  come back here. Its pipeline root is the local backing of
  ``runtimeConfig.gcsOutputDirectory``/<job id>.
- Container components (anything kfp.local's SubprocessRunner refuses) run with kfp.local's
  DockerRunner, so create refuses a spec that has one (400 naming the task and its component)
  unless a Docker engine answers ``docker info``.
- Task details: every task at every level, from the compiled spec and the run's task events
  (:mod:`~hydra_vertex.emulator.pipeline_tasks`, :mod:`~hydra_vertex.emulator.pipeline_events`),
  updated while the run goes and final when it ends.
- Cancel kills the run's process group: the running component gets SIGTERM (``launch_tuning``
  then cancels its tuning job, ``retrain`` its custom job); any job a task launched (its
  ``gcp_resources``) that is still going is cancelled here too, and the pipeline job ends
  CANCELLED once those jobs have ended.
- Restart (after ``kill -9`` or a graceful stop): a pipeline job that was running resumes from its
  last finished tasks. What is left of its process group is killed (SIGKILL: a component that
  got SIGTERM would cancel its Vertex job), and ``pipeline_main`` runs again on the same events
  file: tasks that SUCCEEDED are not run again, their outputs are reused
  (:mod:`~hydra_vertex.emulator.pipeline_events`); ``PIPELINE_JOB_ID`` is the job id, so the
  launchers find the jobs they created (which the emulator itself re-adopted) instead of creating
  new ones.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hydra_vertex import gcp_resources, reasons
from hydra_vertex.emulator import (
    executor,
    forkserver,
    pipeline_events,
    pipeline_main,
    pipeline_tasks,
)
from hydra_vertex.emulator.router import ApiError
from hydra_vertex.emulator.runners import CANCELLED, TERMINAL_JOB_STATES, StoredJobRunner
from hydra_vertex.emulator.store import Record, Store, now
from hydra_vertex.local_conventions import local_path

COLLECTION = "pipelineJobs"
TERMINAL = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")
POLL_SECONDS = 0.5
CANCEL_WAIT_SECONDS = 60.0


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
    _check_containers(spec, where)
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


def _check_containers(spec: dict[str, Any], where: str) -> None:
    """400 if the spec has container components and no Docker engine can run them."""
    needing = pipeline_tasks.container_tasks(spec)
    if not needing:
        return
    why = docker_unavailable()
    if why is None:
        return
    named = "; ".join(f"task {path!r} (component {comp!r})" for path, comp in needing[:5])
    more = f" and {len(needing) - 5} more" if len(needing) > 5 else ""
    raise ApiError(
        400,
        f"{where}.pipeline_spec: {named}{more} cannot run here: a container component runs "
        f"with kfp.local's DockerRunner, and {why}; kfp.local's SubprocessRunner runs "
        "lightweight Python components only",
        "FAILED_PRECONDITION",
    )


def docker_unavailable() -> str | None:
    """Why kfp.local's DockerRunner cannot run here, or None: ``docker info`` answers and the
    ``docker`` package (which the DockerRunner drives) is installed."""
    docker = shutil.which("docker")
    if docker is None:
        return "no Docker engine is reachable (no docker command on PATH)"
    try:
        proc = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"no Docker engine is reachable ('docker info' failed: {e})"
    if proc.returncode != 0:
        line = reasons.deciding_line(proc.stderr, proc.stdout) or f"exit code {proc.returncode}"
        return f"no Docker engine is reachable ('docker info' failed: {line})"
    if importlib.util.find_spec("docker") is None:
        return "the 'docker' Python package that it needs is not installed (pip install docker)"
    return None


def _to_gs(uri: str, local_root: Path, gs_root: str) -> str:
    text = str(uri)
    prefix = str(local_root)
    return gs_root.rstrip("/") + text[len(prefix) :] if text.startswith(prefix) else text


# -- the runner -----------------------------------------------------------------------------------
class PipelineRunner(StoredJobRunner):
    """Runs one pipeline job to its end; follows cancel requests; reflects task progress."""

    collection = COLLECTION
    terminal_states = TERMINAL
    cancelling_state = "PIPELINE_STATE_CANCELLING"
    cancelled_state = "PIPELINE_STATE_CANCELLED"
    failed_state = "PIPELINE_STATE_FAILED"

    def __init__(self, store: Store, job_id: str, endpoint: str, token: str) -> None:
        super().__init__(store, job_id)
        self.endpoint = endpoint
        self.token = token

    def _set_tasks(self, details: list[dict[str, Any]]) -> None:
        self.update(lambda r: r["resource"].update(jobDetail={"taskDetails": details}))

    def _state(self) -> str:
        rec = self.store.get(COLLECTION, self.job_id)
        return "" if rec is None else str(rec["resource"].get("state", ""))

    def _paths(self, res: dict[str, Any]) -> tuple[Path, str, Path]:
        """The run directory, the job's ``gs://`` root and its local backing."""
        gs_root = f"{res['runtimeConfig']['gcsOutputDirectory'].rstrip('/')}/{self.job_id}"
        return (
            self.store.run_dir(self.job_id),
            gs_root,
            local_path(self.store.storage_root, gs_root),
        )

    def _details(
        self, res: dict[str, Any], outcome: str, outputs: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        run_dir, gs_root, local_root = self._paths(res)
        spec = res["pipelineSpec"]
        run = pipeline_tasks.Run(
            job_id=self.job_id,
            pipeline_name=str((spec.get("pipelineInfo") or {}).get("name") or "pipeline"),
            outcome=outcome,
            start_time=res.get("startTime"),
            end_time=None if outcome == "running" else now(),
            outputs=outputs or {},
        )
        events = pipeline_events.read(run_dir / "events.jsonl")
        return pipeline_tasks.details(
            spec, events, run, lambda uri: _to_gs(uri, local_root, gs_root)
        )

    def _end(
        self, state: str, outcome: str, error: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        rec = self.store.get(COLLECTION, self.job_id)
        if rec is None:
            return
        details = self._details(rec["resource"], outcome, extra.pop("outputs", None))
        self.finish(state, error, jobDetail={"taskDetails": details})

    def carry(self) -> None:
        rec = self.store.get(COLLECTION, self.job_id)
        if rec is None or rec["resource"].get("state") in TERMINAL:
            return
        resumed = bool(rec["internal"].get("pid"))
        if resumed:  # the emulator stopped while it ran: what is left of it goes
            executor.kill_leftover(rec["internal"], hard=True)
        if self._state() == "PIPELINE_STATE_CANCELLING":
            self._end("PIPELINE_STATE_CANCELLED", "cancelled", CANCELLED)
            return
        res = rec["resource"]
        run_dir, _gs_root, local_root = self._paths(res)
        run_dir.mkdir(parents=True, exist_ok=True)
        local_root.mkdir(parents=True, exist_ok=True)
        spec_path, params_path = run_dir / "pipeline_spec.json", run_dir / "parameters.json"
        result_path, events_path = run_dir / "result.json", run_dir / "events.jsonl"
        spec_path.write_text(json.dumps(res["pipelineSpec"]))
        values = res["runtimeConfig"].get("parameterValues") or {}
        params_path.write_text(json.dumps(typed_parameters(res["pipelineSpec"], values)))
        result_path.unlink(missing_ok=True)
        if not resumed:  # a resumed run skips the tasks its events say are done
            events_path.unlink(missing_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_EMULATOR")},
            "HYDRA_VERTEX_EMULATOR": self.endpoint,
            "HYDRA_VERTEX_EMULATOR_TOKEN": self.token,
            "STORAGE_EMULATOR_HOST": self.endpoint,
        }
        args = [str(p) for p in (spec_path, params_path, local_root, result_path, events_path)]
        args.append(self.job_id)
        proc = _start(args, env, run_dir, f"pipeline-{self.job_id}")
        start = executor.proc_start(proc.pid)
        self.update(lambda r: r["internal"].update(pid=proc.pid, start=start))

        def running(r: Record) -> None:
            if r["resource"].get("state") == "PIPELINE_STATE_PENDING":
                r["resource"]["state"] = "PIPELINE_STATE_RUNNING"
                r["resource"]["startTime"] = r["resource"]["updateTime"] = now()

        self.update(running)
        last: list[dict[str, Any]] = []
        try:
            while proc.poll() is None:
                if self.stop_event.is_set():  # emulator stopping: the next start resumes it
                    executor.kill_group(proc.pid, proc, hard=True)
                    return
                current = self.store.get(COLLECTION, self.job_id)
                if current is None:
                    return
                if self.cancel_requested():
                    launched = launched_jobs(self._details(current["resource"], "running"))
                    executor.kill_group(proc.pid, proc)  # a launcher cancels its job on SIGTERM
                    self._cancel_jobs(launched)
                    self._end("PIPELINE_STATE_CANCELLED", "cancelled", CANCELLED)
                    return
                details = self._details(current["resource"], "running")
                if details != last:
                    last = details
                    self._set_tasks(details)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(POLL_SECONDS)
            self._finish_from(result_path, run_dir)
        finally:
            if proc.poll() is None:
                executor.kill_group(proc.pid, proc)

    def _cancel_jobs(self, launched: list[tuple[str, str]]) -> None:
        """Cancel the jobs the run's tasks launched that are still going (a launcher killed
        before it could cancel its own), and wait until each has ended."""
        for collection, job_id in launched:

            def cancelling(rec: Record) -> None:
                state = rec["resource"].get("state")
                if state not in (*TERMINAL_JOB_STATES, "JOB_STATE_CANCELLING"):
                    rec["resource"]["state"] = "JOB_STATE_CANCELLING"
                    rec["resource"]["updateTime"] = now()

            with contextlib.suppress(KeyError):
                self.store.update(collection, job_id, cancelling)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        for collection, job_id in launched:
            while time.monotonic() < deadline and not self.stop_event.is_set():
                rec = self.store.get(collection, job_id)
                if rec is None or rec["resource"].get("state") in TERMINAL_JOB_STATES:
                    break
                time.sleep(0.05)

    def _finish_from(self, result_path: Path, run_dir: Path) -> None:
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            result = {"status": "failed", "error": "the pipeline process ended without a result"}
        outputs = result.get("outputs") or {}
        if result.get("status") == "succeeded":
            self._end("PIPELINE_STATE_SUCCEEDED", "succeeded", outputs=outputs)
            return
        rec = self.store.get(COLLECTION, self.job_id)
        details = self._details(rec["resource"], "failed") if rec is not None else []
        self.finish(
            "PIPELINE_STATE_FAILED",
            {"code": 9, "message": failure_message(details, result, run_dir)},
            jobDetail={"taskDetails": details},
        )


def _start(args: list[str], env: dict[str, str], run_dir: Path, name: str) -> Any:
    """The pipeline process (``pipeline_main`` with ``args``) in a session of its own, logging to
    ``run_dir/pipeline.log``: forked from the warm server where there is one, else a fresh
    interpreter."""
    log = run_dir / "pipeline.log"
    if forkserver.available():
        return forkserver.start(pipeline_main.forked, (args, env, str(run_dir), str(log)), name)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hydra_vertex.emulator.pipeline_main", *args],
            cwd=run_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def warm_up() -> None:
    """The warm server the pipeline processes fork from (started first: it imports in a process
    of its own), then kfp's imports here (create validates a spec with kfp). Slow: call it in
    the background."""
    forkserver.warm()
    import kfp.components
    import kfp.dsl.component_factory  # noqa: F401


def launched_jobs(details: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(collection, job id)`` of every job named in a task's ``gcp_resources`` output (a
    launcher writes it as soon as it has created its job)."""
    found = []
    for detail in details:
        metadata = (detail.get("execution") or {}).get("metadata") or {}
        text = metadata.get("output:gcp_resources")
        if not isinstance(text, str):
            continue
        for name in gcp_resources.names(text):
            parts = name.split("/")
            if len(parts) == 6 and parts[4] in ("customJobs", "hyperparameterTuningJobs"):
                found.append((parts[4], parts[5]))
    return found


def failure_message(details: list[dict[str, Any]], result: dict[str, Any], run_dir: Path) -> str:
    """A failed run's ``error.message``: the failed task and its deciding line first, then the
    failed tasks as Vertex names them, then the pipeline log's path. No ANSI, no traceback."""
    lines = []
    first = pipeline_tasks.first_failure(details)
    if first is not None:
        name, message = first
        lines.append(f"task {name} failed: {reasons.first_line(message)}")
    else:
        lines.append(reasons.first_line(str(result.get("error", ""))) or "the pipeline failed")
    root = details[0] if details else {}
    if (root.get("error") or {}).get("message"):
        lines.append(str(root["error"]["message"]))
    lines.append(f"pipeline log: {run_dir / 'pipeline.log'}")
    return "\n".join(lines)
