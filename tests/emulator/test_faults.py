"""Fault handling, through the real SDK: each asserts trial state, reason, failures, job state, and
that no process is left behind."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _helpers import FAILING_IMAGE, no_trial_processes, tuning_job, worker_pool

from hydra_vertex.emulator import EmulatorHandle


def _run_failing(job: Any, **run_kwargs: Any) -> None:
    with pytest.raises(RuntimeError):
        job.run(**run_kwargs)
    assert job.state.name == "JOB_STATE_FAILED"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        pytest.param(
            "crash", "branin: crashing on purpose (exit code 3)", id="crash-before-report"
        ),
        pytest.param("nometric", "reported no metric", id="no-metric"),
        pytest.param("wrongtag", "tags seen: ['loss']", id="wrong-tag"),
        pytest.param("nan", "non-finite", id="nan"),
        pytest.param("signal", "killed by signal 9", id="killed-by-signal"),
    ],
)
def test_failing_trials_end_infeasible(
    sdk: Any, emulator: EmulatorHandle, mode: str, reason: str
) -> None:
    job = tuning_job(sdk, mode, max_trials=3, max_failed=2)
    _run_failing(job)
    trials = job.trials
    assert len(trials) == 2  # the job stops at max_failed_trial_count
    for t in trials:
        assert t.state.name == "INFEASIBLE"
        assert reason in t.infeasible_reason
    assert "2 trials failed" in job.gca_resource.error.message
    assert no_trial_processes(emulator.state_dir)


def test_crash_reason_has_log_tail(sdk: Any) -> None:
    job = tuning_job(sdk, "crash", max_trials=1)
    _run_failing(job)
    assert "crashing on purpose" in job.trials[0].infeasible_reason


def test_every_trial_failing_fails_the_job(sdk: Any) -> None:
    job = tuning_job(sdk, "crash", max_trials=3, parallel=2, max_failed=0)
    _run_failing(job)
    assert [t.state.name for t in job.trials] == ["INFEASIBLE"] * 3


def test_fail_fast_when_the_first_trials_all_fail(sdk: Any, emulator: EmulatorHandle) -> None:
    """max_failed_trial_count 0: the job fails once the first max(parallel, 3) trials have all
    failed, with each one's deciding line, not after max_trial_count trials."""
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    from hydra_vertex.progress import emulator_jobs, tuning_snapshot

    shim = Path(sys.executable).with_name("hydra-vertex-shim")
    command = [str(shim), "--search-space", "search_space.yaml", "--", sys.executable, "app.py"]
    pool = worker_pool(command, image=FAILING_IMAGE)
    job = sdk.HyperparameterTuningJob(
        display_name="doomed",
        custom_job=sdk.CustomJob(display_name="doomed-trial", worker_pool_specs=pool),
        metric_spec={"loss": "minimize"},
        parameter_spec={"lr": hpt.DoubleParameterSpec(1e-4, 1.0, "log")},
        max_trial_count=20,
        parallel_trial_count=2,
        max_failed_trial_count=0,
    )
    _run_failing(job)
    failed = [t for t in job.trials if not t.infeasible_reason.startswith("stopped")]
    assert len(failed) == 3 and len(job.trials) <= 4  # at most one more was running
    assert all(t.state.name == "INFEASIBLE" for t in job.trials)
    message = job.gca_resource.error.message
    assert message.startswith("the first 3 trials all failed and none succeeded")
    assert message.count("RuntimeError: diverged at lr=") == 3
    assert "Traceback" not in message
    # the emulator's own progress display lists it over the API, across projects and locations
    found = tuning_snapshot(emulator_jobs(emulator.endpoint, emulator.token)())
    assert found is not None and found[0] == job.resource_name
    assert found[2].stage == "doomed: failed" and found[2].count("INFEASIBLE") == len(job.trials)


def test_timeout_kills_the_process_group(sdk: Any, emulator: EmulatorHandle) -> None:
    job = tuning_job(sdk, "hang", max_trials=1)
    _run_failing(job, timeout=3)
    (trial,) = job.trials
    assert "scheduling.timeout" in trial.infeasible_reason
    assert list(emulator.state_dir.rglob("grandchild.pid")), "the app did not start its grandchild"
    assert no_trial_processes(emulator.state_dir)


def test_cancel_mid_run(sdk: Any, emulator: EmulatorHandle) -> None:
    job = tuning_job(sdk, "hang", max_trials=4, parallel=2)
    job.run(sync=False)
    job.wait_for_resource_creation()
    deadline = time.monotonic() + 60
    while not list(emulator.state_dir.rglob("grandchild.pid")) and time.monotonic() < deadline:
        time.sleep(0.2)
    job.cancel()
    while time.monotonic() < deadline:
        job._sync_gca_resource()
        state = job.gca_resource.state.name  # read once: job.state fetches the job again
        if state == "JOB_STATE_CANCELLED":
            break
        assert state in ("JOB_STATE_RUNNING", "JOB_STATE_CANCELLING")
        time.sleep(0.2)
    assert job.state.name == "JOB_STATE_CANCELLED"
    assert job.gca_resource.error.code == 1
    assert no_trial_processes(emulator.state_dir)
