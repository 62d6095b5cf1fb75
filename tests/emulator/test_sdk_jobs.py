"""The real aiplatform SDK over REST against the emulator: a failing custom job and the Branin
tuning job (create/get/list/cancel, which hold on Vertex too, are in tests/contract)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import pytest
from _helpers import shim_command, worker_pool


def test_failing_custom_job_raises(sdk: Any) -> None:
    job = sdk.CustomJob(
        display_name="bad",
        worker_pool_specs=worker_pool(
            [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(4)"]
        ),
    )
    with pytest.raises(RuntimeError, match="code 4"):
        job.run()
    assert job.state.name == "JOB_STATE_FAILED"


def test_branin_tuning_job(sdk: Any) -> None:
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    custom = sdk.CustomJob(
        display_name="branin-trial", worker_pool_specs=worker_pool(shim_command())
    )
    job = sdk.HyperparameterTuningJob(
        display_name="branin",
        custom_job=custom,
        metric_spec={"value": "minimize"},
        parameter_spec={
            "x": hpt.DoubleParameterSpec(-5, 10, "linear"),
            "y": hpt.DoubleParameterSpec(0, 15, "linear"),
        },
        max_trial_count=20,
        parallel_trial_count=2,
    )
    job.run()
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    trials = job.trials
    assert len(trials) == 20
    reasons = [t.infeasible_reason for t in trials if t.state.name != "SUCCEEDED"]
    assert all(t.state.name == "SUCCEEDED" for t in trials), reasons
    best = min(t.final_measurement.metrics[0].value for t in trials)
    assert abs(best - 0.397887) < 0.5, best
    spans = [(_ts(t.start_time), _ts(t.end_time)) for t in trials]
    events = sorted(
        [(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda ev: (ev[0], ev[1])
    )
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2
    # no idle slot while trials remained: each trial after the first two starts soon after one ends
    ends = sorted(e for _, e in spans)
    starts = sorted(s for s, _ in spans)
    for i, start in enumerate(starts[2:]):
        assert start - ends[i] < 10.0, (i, start - ends[i])


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value.timestamp())
