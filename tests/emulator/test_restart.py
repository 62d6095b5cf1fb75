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
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _helpers import IMAGE, marked_processes

BRANIN = Path(__file__).parent / "apps" / "branin"
PARENT = "projects/test-project/locations/us-central1"
CLI = Path(sys.executable).with_name("hydra-vertex")
SHIM = Path(sys.executable).with_name("hydra-vertex-shim")
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


class Emulator:
    """One ``hydra-vertex emulator`` process on ``state``; ``fault``: its HYDRA_VERTEX_FAULT."""

    count = 0

    def __init__(self, state: Path, fault: str = "") -> None:
        (state / "endpoint.json").unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_VERTEX_FAULT"}
        if fault:
            env["HYDRA_VERTEX_FAULT"] = fault
        Emulator.count += 1
        self.log = state.parent / f"emulator-{Emulator.count}.log"
        state.mkdir(parents=True, exist_ok=True)
        argv = [str(CLI), "emulator", "--state-dir", str(state), "--no-grpc", "--quiet"]
        argv += ["--image", f"{IMAGE}={BRANIN}", "--seed", "3", "--gpus", "0,1"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        until(lambda: (state / "endpoint.json").exists(), "the emulator to start", self.proc)
        info = json.loads((state / "endpoint.json").read_text())
        from google.cloud import aiplatform_v1

        from hydra_vertex.vertex import bearer_credentials

        self.client = aiplatform_v1.JobServiceClient(
            transport="rest",
            client_options={"api_endpoint": info["endpoint"]},
            credentials=bearer_credentials(info["token"]),
        )

    def kill(self) -> None:
        """``kill -9``."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def died(self) -> None:
        """Wait for the emulator to kill itself at its fault point."""
        try:
            code = self.proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the fault point was never reached; see {self.log}") from None
        assert code == -signal.SIGKILL, f"exit {code}; see {self.log}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)


def until(check: Callable[[], Any], what: str, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + 180
    while not (result := check()):
        assert proc is None or proc.poll() is None, f"the emulator exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


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
            get = client.get_custom_job if "customJobs" in name else (
                client.get_hyperparameter_tuning_job
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
        assert len({tuple((p.parameter_id, p.value) for p in t.parameters) for t in succeeded}) == 12
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
