"""``kill -9`` of the emulator mid-job, then a restart on the same state directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _helpers import IMAGE, no_trial_processes, tuning_job

from hydra_vertex.emulator import connect

BRANIN = Path(__file__).parent / "apps" / "branin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(state: Path, port: int) -> subprocess.Popen[bytes]:
    (state / "endpoint.json").unlink(missing_ok=True)
    cli = Path(sys.executable).with_name("hydra-vertex")
    proc = subprocess.Popen(
        [
            str(cli),
            "emulator",
            "--state-dir",
            str(state),
            "--port",
            str(port),
            "--image",
            f"{IMAGE}={BRANIN}",
            "--seed",
            "3",
        ]
    )
    deadline = time.monotonic() + 60
    while not (state / "endpoint.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "emulator did not start"
        time.sleep(0.1)
    return proc


def _connect(state: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from google.cloud import aiplatform
    from google.cloud.aiplatform import jobs

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.5)
    connect(
        state,
        project="test-project",
        location="us-central1",
        staging_bucket="gs://test-bucket/staging",
    )
    return aiplatform


def test_kill_9_and_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, port = tmp_path / "state", _free_port()
    first = _start(state, port)
    try:
        aiplatform = _connect(state, monkeypatch)
        job = tuning_job(aiplatform, "slow", max_trials=6, parallel=2, name="restart")
        job.run(sync=False)
        job.wait_for_resource_creation()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job._sync_gca_resource()
            done = [t for t in job.trials if t.state.name == "SUCCEEDED"]
            if len(done) >= 2 and any(t.state.name == "ACTIVE" for t in job.trials):
                break
            time.sleep(0.2)
        assert json.loads((state / "endpoint.json").read_text())["endpoint"].endswith(str(port))
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = _start(state, port)
        try:
            # a second server on the same state directory is refused
            third = subprocess.run(
                [
                    str(Path(sys.executable).with_name("hydra-vertex")),
                    "emulator",
                    "--state-dir",
                    str(state),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert third.returncode == 1 and "already using" in third.stderr
            aiplatform = _connect(state, monkeypatch)
            resumed = aiplatform.HyperparameterTuningJob.get(job.resource_name)
            deadline = time.monotonic() + 180
            while resumed.state.name not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
                assert time.monotonic() < deadline, "the job did not carry on after the restart"
                time.sleep(0.5)
                resumed._sync_gca_resource()
            trials = resumed.trials
            assert resumed.state.name == "JOB_STATE_SUCCEEDED"
            assert len(trials) == 6
            assert len({t.id for t in trials}) == 6
            assert (
                len({tuple((p.parameter_id, p.value) for p in t.parameters) for t in trials}) == 6
            )
            interrupted = [t for t in trials if "interrupted" in t.infeasible_reason]
            assert interrupted, "the trials running at the kill are reconciled as interrupted"
            assert no_trial_processes(state)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
