"""``launch_tuning`` against the in-process emulator, with real launcher processes: a killed and
restarted launcher finds the job it created (by gcp_resources or by its launch label) instead of
creating a second one; SIGTERM cancels the job; a job whose trials all fail is reported clearly;
the gcp_resources file is GCPC's format naming the job and the emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hydra_vertex.emulator import EmulatorHandle, start
from hydra_vertex.errors import TuningError

BRANIN = Path(__file__).resolve().parent / "emulator" / "apps" / "branin"
IMAGE = "local/launch-branin:latest"
PROJECT = "test-project"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
SPACE = {
    "metric": "value",
    "direction": "minimize",
    "params": {"x": "interval(-5, 10)", "y": "interval(0, 15)"},
}
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}
DEADLINE = 120.0  # a bound on every wait, so that a hang fails instead of stalling the suite

# The launcher as a pipeline task runs it: its own process, talking to the emulator by env vars.
LAUNCHER = """
import json, sys
from hydra_vertex.steps.tune import launch_tuning
print("launched", launch_tuning(**json.loads(sys.argv[1])), flush=True)
"""


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with start(tmp_path / "state", images={IMAGE: str(BRANIN)}, seed=7) as handle:
        yield handle


@pytest.fixture
def client(emulator: EmulatorHandle) -> Any:
    from google.cloud import aiplatform_v1

    from hydra_vertex.vertex import bearer_credentials

    return aiplatform_v1.JobServiceClient(
        transport="rest",
        client_options={"api_endpoint": emulator.endpoint},
        credentials=bearer_credentials(emulator.token),
    )


def _kwargs(tmp_path: Path, mode: str, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        project=PROJECT,
        location=LOCATION,
        name="launch",
        image_uri=IMAGE,
        app_command=["python", "app.py", f"mode={mode}"],
        search_space=SPACE,
        max_trial_count=2,
        parallel_trial_count=2,
        staging_bucket="gs://test-bucket/staging",
        seed=3,
        launch_key="run-1",
        gcp_resources_path=str(tmp_path / "out" / "gcp_resources"),
        poll_seconds=0.2,
    )
    args.update(extra)
    return args


class Launcher:
    """One launcher process; its output goes to a file that the test reads while it runs."""

    def __init__(self, emulator: EmulatorHandle, kwargs: dict[str, Any], log: Path) -> None:
        env = {
            **os.environ,
            "HYDRA_VERTEX_EMULATOR": emulator.endpoint,
            "HYDRA_VERTEX_EMULATOR_TOKEN": emulator.token,
        }
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", "-c", LAUNCHER, json.dumps(kwargs)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE
        while not ready():
            assert self.proc.poll() is None, f"launcher exited before {what}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {what}:\n{self.output()}"
            time.sleep(0.1)

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"launcher did not finish:\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def launchers() -> Iterator[list[Launcher]]:
    started: list[Launcher] = []
    yield started
    for launcher in started:
        launcher.kill()


def _tuning_jobs(client: Any) -> list[Any]:
    return list(client.list_hyperparameter_tuning_jobs(parent=PARENT))


def _wait_terminal(client: Any, name: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        job = client.get_hyperparameter_tuning_job(name=name)
        if job.state.name in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"{name} still {job.state.name}"
        time.sleep(0.2)


@pytest.mark.parametrize("keep_gcp_resources", [True, False], ids=["gcp_resources", "label"])
def test_killed_launcher_resumes_the_same_job(
    tmp_path: Path,
    emulator: EmulatorHandle,
    client: Any,
    launchers: list[Launcher],
    keep_gcp_resources: bool,
) -> None:
    kwargs = _kwargs(tmp_path, "slow", app_command=["python", "app.py", "mode=slow", "+sleep=4"])
    resources = Path(kwargs["gcp_resources_path"])
    first = Launcher(emulator, kwargs, tmp_path / "first.log")
    launchers.append(first)
    first.wait_for("tuning job in the emulator", lambda: len(_tuning_jobs(client)) > 0)
    first.wait_for("gcp_resources file", resources.exists)
    os.kill(first.proc.pid, signal.SIGKILL)
    assert first.proc.wait(timeout=DEADLINE) == -signal.SIGKILL
    assert "created HyperparameterTuningJob" in first.output()

    [job] = _tuning_jobs(client)
    assert job.state.name not in TERMINAL  # the kill came while the job ran: the relaunch must wait
    if not keep_gcp_resources:
        resources.unlink()

    second = Launcher(emulator, kwargs, tmp_path / "second.log")
    launchers.append(second)
    assert second.finish() == 0, second.output()
    out = second.output()
    how = "from gcp_resources" if keep_gcp_resources else "found by its launch label"
    assert f"resuming HyperparameterTuningJob {job.name} ({how})" in out
    assert "created HyperparameterTuningJob" not in out
    assert f"launched {job.name}" in out

    jobs = _tuning_jobs(client)
    assert [j.name for j in jobs] == [job.name]
    assert jobs[0].state.name == "JOB_STATE_SUCCEEDED"
    assert len(jobs[0].trials) == 2
    assert json.loads(resources.read_text())["resources"][0]["resourceUri"].endswith(job.name)


def test_relaunch_with_another_key_creates_another_job(
    tmp_path: Path, emulator: EmulatorHandle, client: Any, launchers: list[Launcher]
) -> None:
    """The control for the resume test: the label is per launch key, not per app."""
    for key in ("run-1", "run-2"):
        kwargs = _kwargs(
            tmp_path,
            "ok",
            launch_key=key,
            gcp_resources_path=None,
            max_trial_count=1,
            parallel_trial_count=1,
        )
        launcher = Launcher(emulator, kwargs, tmp_path / f"{key}.log")
        launchers.append(launcher)
        assert launcher.finish() == 0, launcher.output()
        assert "created HyperparameterTuningJob" in launcher.output()
    jobs = _tuning_jobs(client)
    assert len(jobs) == 2
    assert len({dict(j.labels)["hydra-vertex-launch"] for j in jobs}) == 2


def test_sigterm_cancels_the_job(
    tmp_path: Path, emulator: EmulatorHandle, client: Any, launchers: list[Launcher]
) -> None:
    kwargs = _kwargs(tmp_path, "hang")
    launcher = Launcher(emulator, kwargs, tmp_path / "launcher.log")
    launchers.append(launcher)

    def running() -> bool:
        jobs = _tuning_jobs(client)
        return bool(jobs) and jobs[0].state.name == "JOB_STATE_RUNNING"

    launcher.wait_for("a RUNNING job", running)
    # A trial line is logged from inside the wait, where the SIGTERM handler is installed.
    launcher.wait_for("a trial log line", lambda: "[hydra-vertex] trial " in launcher.output())
    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.finish() == 128 + signal.SIGTERM, launcher.output()
    [job] = _tuning_jobs(client)
    assert f"SIGTERM: cancelling {job.name}" in launcher.output()
    final = _wait_terminal(client, job.name)
    assert final.state.name == "JOB_STATE_CANCELLED"
    assert final.error.code == 1


def test_all_trials_fail(
    tmp_path: Path, emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra_vertex.steps import best
    from hydra_vertex.steps.tune import launch_tuning

    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", emulator.endpoint)
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", emulator.token)
    kwargs = _kwargs(tmp_path, "crash")
    with pytest.raises(TuningError, match="JOB_STATE_FAILED") as e:
        launch_tuning(**kwargs)
    resources = json.loads(Path(kwargs["gcp_resources_path"]).read_text())
    [resource] = resources["resources"]
    assert resource["resourceType"] == "HyperparameterTuningJob"
    assert resource["resourceUri"].startswith(
        f"{emulator.endpoint}/v1/{PARENT}/hyperparameterTuningJobs/"
    )
    job_name = resource["resourceUri"].split("/v1/", 1)[1]
    assert job_name in str(e.value)

    trials_path = tmp_path / "out" / "trials.json"
    with pytest.raises(TuningError) as e2:
        best.pick(
            location=LOCATION, tuning_job=job_name, search_space=SPACE, trials_path=str(trials_path)
        )
    message = str(e2.value)
    assert "no trial succeeded (2 trials: 2 INFEASIBLE)" in message
    assert "2 x branin: crashing on purpose (exit code 3)" in message  # the deciding line, counted
    data = json.loads(trials_path.read_text())
    assert data["tuning_job"] == job_name
    assert [t["state"] for t in data["trials"]] == ["INFEASIBLE", "INFEASIBLE"]
    assert all(t["infeasible_reason"] for t in data["trials"])
    assert "best_trial_id" not in data


def test_gcp_resources_names_the_job_and_the_emulator(
    tmp_path: Path, emulator: EmulatorHandle, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.protobuf import json_format
    from google_cloud_pipeline_components.proto import gcp_resources_pb2

    from hydra_vertex.steps.tune import launch_tuning

    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", emulator.endpoint)
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", emulator.token)
    kwargs = _kwargs(tmp_path, "ok", max_trial_count=1, parallel_trial_count=1)
    name = launch_tuning(**kwargs)
    [job] = _tuning_jobs(client)
    assert job.name == name
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    assert dict(job.labels)["hydra-vertex-seed"] == "3"
    text = Path(kwargs["gcp_resources_path"]).read_text()
    parsed = json_format.Parse(text, gcp_resources_pb2.GcpResources())
    assert [(r.resource_type, r.resource_uri) for r in parsed.resources] == [
        ("HyperparameterTuningJob", f"{emulator.endpoint}/v1/{name}")
    ]
    # A second launch with the same key and file returns the same job without creating one.
    assert launch_tuning(**kwargs) == name
    assert [j.name for j in _tuning_jobs(client)] == [name]


@pytest.mark.parametrize("keep_gcp_resources", [True, False], ids=["gcp_resources", "label"])
def test_a_failed_job_is_not_resumed_a_retry_launches_anew(
    tmp_path: Path,
    emulator: EmulatorHandle,
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    keep_gcp_resources: bool,
) -> None:
    from hydra_vertex.steps.tune import launch_tuning

    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", emulator.endpoint)
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", emulator.token)
    failing = _kwargs(tmp_path, "crash", max_trial_count=1, parallel_trial_count=1)
    with pytest.raises(TuningError):
        launch_tuning(**failing)
    [failed] = _tuning_jobs(client)
    if not keep_gcp_resources:
        Path(failing["gcp_resources_path"]).unlink()
    # The task is retried with the same launch key (the app was fixed meanwhile).
    name = launch_tuning(**{**failing, "app_command": ["python", "app.py", "mode=ok"]})
    assert name != failed.name
    jobs = {j.name: j.state.name for j in _tuning_jobs(client)}
    assert jobs == {failed.name: "JOB_STATE_FAILED", name: "JOB_STATE_SUCCEEDED"}
