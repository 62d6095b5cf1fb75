"""`hydra-vertex run --local` owns its job: two runs on one state directory share the emulator
started for them and keep their own trials; Ctrl-C or SIGTERM cancels the run's pipeline job (and
the tuning job or retrain it launched), waits for CANCELLED and exits 130 / 143. Real runs of the
command, signals sent to it, job states read back through the SDK (slow)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from hydra_vertex.emulator import connect, start

APP = Path(__file__).parent / "apps" / "gate_app"
CLI = Path(sys.executable).with_name("hydra-vertex")
LOCATION = "projects/local-project/locations/us-central1"
T = TypeVar("T")

pytestmark = pytest.mark.slow


def _job(
    where: Path, trials: int, *, parallel: int = 2, app_args: tuple[str, ...] = (),
    retrain: tuple[str, ...] = (),
) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "space.yaml").write_text(
        "metric: loss\ndirection: minimize\nparams:\n  lr: tag(log, interval(0.001, 1.0))\n"
    )
    job = {
        "name": "gate",  # every run here has the same name: only the job names tell them apart
        "app": {"source": str(APP), "command": ["python", "app.py", *app_args]},
        "search_space": "space.yaml",
        "tuning": {"max_trials": trials, "parallel_trials": parallel, "seed": 0},
        "retrain": {"overrides": list(retrain)},
    }
    (where / "job.yaml").write_text(yaml.safe_dump(job))
    return where / "job.yaml"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_")}
    env.update(
        HYDRA_VERTEX_IMAGES=str(tmp / "images"), HYDRA_VERTEX_CACHE_DIR=str(tmp / "cache"), **extra
    )
    return env


def _run(job: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CLI), "run", "--local", str(job), "--output", "SUMMARY.json", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@contextlib.contextmanager
def _running(job: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A run of ``job`` that is killed if the test leaves before it ended."""
    run = _run(job, job.parent, env)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=30)


def _until(fetch: Callable[[], T | None], what: str, timeout: float = 300) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = fetch()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _alive(pids: Path) -> list[int]:
    out = []
    for p in pids.iterdir() if pids.is_dir() else []:
        try:
            os.kill(int(p.name), 0)
        except ProcessLookupError:
            continue
        out.append(int(p.name))
    return out


def _clients(endpoint: str, token: str) -> tuple[Any, Any]:
    from hydra_vertex.vertex import emulator_client

    return (
        emulator_client(endpoint, token, "JobServiceClient"),
        emulator_client(endpoint, token, "PipelineServiceClient"),
    )


def _running_trial(jobs: Any) -> Any:
    for job in jobs.list_hyperparameter_tuning_jobs(parent=LOCATION):
        if any(t.state.name == "ACTIVE" for t in job.trials):
            return job
    return None


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process (an emulator started here) and the runs see the same images."""
    for k, v in _env(tmp_path).items():
        if k.startswith("HYDRA_VERTEX_"):
            monkeypatch.setenv(k, v)
    yield


def test_two_runs_on_one_state_dir_share_the_emulator_and_keep_their_own_trials(
    tmp_path: Path,
) -> None:
    state, gate = tmp_path / "state", tmp_path / "gate"
    first = _job(tmp_path / "first", trials=2)
    second = _job(tmp_path / "second", trials=3, app_args=(f"gate={gate}",))
    env = _env(tmp_path)
    waiting = _run(second, second.parent, env, "--state-dir", str(state), "--quiet")
    quick = _run(first, first.parent, env, "--state-dir", str(state), "--quiet")
    _, err = quick.communicate(timeout=600)
    assert quick.returncode == 0, err
    assert waiting.poll() is None  # the second run's trials wait at the gate: it is still going
    gate.touch()
    _, err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, err

    one = json.loads((first.parent / "SUMMARY.json").read_text())
    two = json.loads((second.parent / "SUMMARY.json").read_text())
    assert one["tuning_job"] != two["tuning_job"]
    assert [t["id"] for t in one["trials"]] == ["1", "2"]
    assert [t["id"] for t in two["trials"]] == ["1", "2", "3"]
    for summary in (one, two):
        job_id = summary["tuning_job"].rsplit("/", 1)[1]
        assert all(f"/{job_id}/" in t["output_dir"] for t in summary["trials"])
        assert summary["status"] == "succeeded" and Path(summary["model_dir"], "model.txt").is_file()
    # One emulator served both (started by one, used by the other), and it is gone now.
    log = (state / "emulator.log").read_text()
    assert log.count("hydra-vertex: emulator at ") == 1, log
    assert not (state / "auto-emulator.json").exists()
    with start(state):  # the state directory is free again
        pass


def test_ctrl_c_cancels_the_pipeline_job_and_its_tuning_job_then_exits_130(
    tmp_path: Path, images: None
) -> None:
    pids = tmp_path / "pids"
    job = _job(tmp_path / "run", trials=6, app_args=(f"gate={tmp_path / 'never'}", f"pids={pids}"))
    with start(tmp_path / "state") as emulator:  # a persistent emulator: it outlives the run
        env = _env(
            tmp_path, HYDRA_VERTEX_EMULATOR=emulator.endpoint,
            HYDRA_VERTEX_EMULATOR_TOKEN=emulator.token,
        )
        jobs, pipelines = _clients(emulator.endpoint, emulator.token)
        with _running(job, env) as run:
            tuning = _until(lambda: _running_trial(jobs), "a running trial")
            _until(lambda: len(_alive(pids)) == 2, "both trials' processes")
            run.send_signal(signal.SIGINT)
            _, err = run.communicate(timeout=300)
        assert run.returncode == 130, err
        [pipeline] = pipelines.list_pipeline_jobs(parent=LOCATION)
        assert pipeline.state.name == "PIPELINE_STATE_CANCELLED"
        assert f"hydra-vertex: pipeline job {pipeline.name} CANCELLED" in err
        assert "Traceback" not in err
        tuning = jobs.get_hyperparameter_tuning_job(name=tuning.name)
        assert tuning.state.name == "JOB_STATE_CANCELLED"
        assert len(tuning.trials) < 6 and all(t.state.name != "ACTIVE" for t in tuning.trials)
        assert not list(jobs.list_custom_jobs(parent=LOCATION))  # no retrain was started
    assert _alive(pids) == []
    summary = json.loads((job.parent / "SUMMARY.json").read_text())
    assert summary["status"] == "cancelled" and summary["tuning_job"] == tuning.name


def test_sigterm_during_the_retrain_cancels_it_then_exits_143(tmp_path: Path, images: None) -> None:
    pids, state = tmp_path / "pids", tmp_path / "run" / ".hydra-vertex" / "emulator"
    job = _job(
        tmp_path / "run", trials=2, retrain=(f"gate={tmp_path / 'never'}", f"pids={pids}")
    )
    with _running(job, _env(tmp_path)) as run:  # the emulator is started for this run
        info = _until(
            lambda: json.loads((state / "endpoint.json").read_text())
            if (state / "endpoint.json").is_file() else None,
            "the emulator started for the run",
        )
        jobs, _ = _clients(info["endpoint"], info["token"])
        _until(
            lambda: [j for j in jobs.list_custom_jobs(parent=LOCATION)
                     if j.state.name == "JOB_STATE_RUNNING"],
            "the retrain",
        )
        _until(lambda: _alive(pids), "the retrain's process")
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=300)
    assert run.returncode == 143, err
    assert "CANCELLED" in err and "Traceback" not in err
    assert _alive(pids) == []
    # The run's emulator is gone with it; its state, read back through the SDK, says why.
    from google.cloud import aiplatform

    with start(state):
        connect(state, project="local-project", location="us-central1")
        [pipeline] = aiplatform.PipelineJob.list()
        [retrain] = aiplatform.CustomJob.list()
        [tuning] = aiplatform.HyperparameterTuningJob.list()
        assert pipeline.state.name == "PIPELINE_STATE_CANCELLED"
        assert f"pipeline job {pipeline.resource_name} CANCELLED" in err
        assert retrain.state.name == "JOB_STATE_CANCELLED"
        assert tuning.state.name == "JOB_STATE_SUCCEEDED"
