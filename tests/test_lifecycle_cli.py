"""`hydra-vertex status`, `cancel`, `logs` and `open` as a user runs them (the installed command,
in a subprocess) against a real emulator whose jobs were created through the aiplatform SDK: a
tuning job whose trials wait until the test lets each one finish (tests/apps/gated_app), and a
retrain-like custom job."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hydra_vertex.emulator import EmulatorHandle, connect, start

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "apps" / "gated_app"
IMAGE = "local/gated:latest"
CLI = Path(sys.executable).with_name("hydra-vertex")
SHIM = Path(sys.executable).with_name("hydra-vertex-shim")
DEADLINE = 180.0  # seconds; generous: the machine is shared


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    from google.cloud.aiplatform import jobs

    state = tmp_path_factory.mktemp("lifecycle") / "state"
    wait_time, jobs._JOB_WAIT_TIME = jobs._JOB_WAIT_TIME, 0.5  # the SDK's poll interval
    with start(state, images={IMAGE: str(APP)}, seed=3) as handle:
        connect(handle.state_dir, project="life-project", location="us-central1",
                staging_bucket="gs://life-bucket/staging")
        yield handle
    jobs._JOB_WAIT_TIME = wait_time


def cli(emulator: EmulatorHandle, *args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], env=_env(emulator), capture_output=True, text=True,
                          timeout=timeout)


def _env(emulator: EmulatorHandle) -> dict[str, str]:
    return {**os.environ, "HYDRA_VERTEX_EMULATOR": emulator.endpoint,
            "HYDRA_VERTEX_EMULATOR_TOKEN": emulator.token, "NO_COLOR": "1", "COLUMNS": "200"}


def _pool(command: list[str]) -> list[dict[str, Any]]:
    return [{"machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": 1,
             "container_spec": {"image_uri": IMAGE, "command": command, "args": []}}]


def _wait(what: str, check: Any, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tuning(emulator: EmulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A running tuning job 'life-tuning': 3 trials, 2 at a time, each waiting for its gate."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    gate = tmp_path_factory.mktemp("gates")
    command = [str(SHIM), "--search-space", "space.yaml", "--", sys.executable, "app.py",
               f"gate={gate}"]
    custom = aiplatform.CustomJob(display_name="life-trial", worker_pool_specs=_pool(command))
    job = aiplatform.HyperparameterTuningJob(
        display_name="life-tuning", custom_job=custom, metric_spec={"loss": "minimize"},
        parameter_spec={"x": hpt.DoubleParameterSpec(-2, 4, "linear")},
        max_trial_count=3, parallel_trial_count=2,
    )
    job.run(sync=False)
    _wait("the job to exist", lambda: job._gca_resource.name)
    name = job.resource_name
    _wait("two running trials", lambda: len([
        t for t in aiplatform.HyperparameterTuningJob.get(name).trials if t.state.name == "ACTIVE"
    ]) == 2)
    return aiplatform.HyperparameterTuningJob.get(name), gate


def test_status_lists_and_details_a_running_tuning_job(emulator: EmulatorHandle, tuning: tuple[Any, Path]) -> None:
    job, _ = tuning
    done = cli(emulator, "status")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if "life-tuning" in line)
    assert "JOB_STATE_RUNNING" in line and "2 running" in line, done.stdout
    detail = cli(emulator, "status", "life-tuning", "--format", "json")
    assert detail.returncode == 0, detail.stderr
    data = json.loads(detail.stdout)
    assert data["name"] == job.resource_name and data["state"] == "JOB_STATE_RUNNING"
    assert data["kind"] == "tuning" and data["trials_running"] == 2 and data["max_trials"] == 3
    assert [t["id"] for t in data["trials"]] == ["1", "2"]
    assert data["elapsed_seconds"] >= 0
    # an id and the app's name (NAME-tuning) find the same job; a name nothing carries is one line
    by_id = json.loads(cli(emulator, "status", job.name, "--format", "json").stdout)
    assert by_id["name"] == job.resource_name
    assert json.loads(cli(emulator, "status", "life", "--format", "json").stdout)["name"] == job.resource_name
    missing = cli(emulator, "status", "no-such-job")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        missing.stderr.strip().splitlines()[0]
    ] and "'no-such-job'" in missing.stderr and "Traceback" not in missing.stderr


def test_logs_of_a_trial_and_follow_ends_when_the_trial_ends(
    emulator: EmulatorHandle, tuning: tuple[Any, Path]
) -> None:
    job, gate = tuning
    _wait("trial 1's steps in its log",
          lambda: "step 2" in cli(emulator, "logs", job.name, "--trial", "1").stdout)
    done = cli(emulator, "logs", "life-tuning", "--trial", "1")
    assert done.returncode == 0, done.stderr
    assert "gated: trial 1 starts with x=" in done.stdout
    assert "gated: trial 1 writes to stderr too" in done.stdout
    assert "gated: trial 2" not in done.stdout
    every = cli(emulator, "logs", "life-tuning")
    assert "[trial 1] gated: trial 1 step 0" in every.stdout and "[trial 2] gated: trial 2" in every.stdout
    bad = cli(emulator, "logs", "life-tuning", "--trial", "9")
    assert bad.returncode == 2 and "has no such trial (its trials: 1, 2" in bad.stderr

    follow = subprocess.Popen([str(CLI), "logs", "life-tuning", "--trial", "1", "--follow"],
                              env=_env(emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert follow.stdout is not None
        seen = b""
        end = time.monotonic() + DEADLINE
        while b"step 2" not in seen:  # it printed what there is, and it goes on
            assert time.monotonic() < end and follow.poll() is None, seen
            ready, _, _ = select.select([follow.stdout], [], [], 1.0)
            if ready:
                seen += os.read(follow.stdout.fileno(), 65536)
        (gate / "1").touch()  # trial 1 may finish now
        out, err = follow.communicate(timeout=DEADLINE)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0, err
    assert b"gated: trial 1 done" in seen + out


def test_open_prints_the_console_page_of_the_job(emulator: EmulatorHandle, tuning: tuple[Any, Path]) -> None:
    job, _ = tuning
    done = cli(emulator, "open", "life-tuning")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (  # the read-only console token, never the API token
        f"{emulator.endpoint}/console/hyperparameterTuningJobs/{job.name}"
        f"?token={emulator.console_token}"
    )


def test_cancel_stops_the_running_trials_and_ends_cancelled(
    emulator: EmulatorHandle, tuning: tuple[Any, Path]
) -> None:
    from google.cloud import aiplatform

    job, _ = tuning
    _wait("trial 3 to run", lambda: len(aiplatform.HyperparameterTuningJob.get(job.resource_name).trials) == 3)
    done = cli(emulator, "cancel", "life-tuning")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "life-tuning: CANCELLED after" in done.stdout
    assert "stopped: trial 2, trial 3" in done.stdout
    ended = aiplatform.HyperparameterTuningJob.get(job.resource_name)
    assert ended.state.name == "JOB_STATE_CANCELLED"
    again = cli(emulator, "cancel", job.resource_name)
    assert again.returncode == 2 and "already ended CANCELLED: nothing to cancel" in again.stderr


def test_logs_of_the_retrain(emulator: EmulatorHandle) -> None:
    from google.cloud import aiplatform

    command = [str(SHIM), "--retrain", "--", sys.executable, "app.py", "x=1.5"]
    retrain = aiplatform.CustomJob(display_name="life-retrain", worker_pool_specs=_pool(command))
    retrain.run()
    done = cli(emulator, "logs", "life-retrain")
    assert done.returncode == 0, done.stderr
    assert "gated: trial job starts with x=1.5" in done.stdout
    assert "gated: trial job done" in done.stdout
    followed = cli(emulator, "logs", "life-retrain", "--follow")  # ended: prints all, returns
    assert followed.returncode == 0 and followed.stdout == done.stdout
    trial = cli(emulator, "logs", "life-retrain", "--trial", "1")
    assert trial.returncode == 2 and "is a custom job, not a tuning job" in trial.stderr
