"""A study with several metrics on the emulator, through the real SDK: a trial must report every
metric; one that misses one ends INFEASIBLE with the metric named."""

from __future__ import annotations

import sys
from typing import Any

from _helpers import worker_pool

# Reports "loss" always and "size" only for x < 3 (one JSON line per report, as hypertune does).
TRIAL = """
import json, os, sys, time
x = next(float(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--x="))
path = os.environ["CLOUD_ML_HP_METRIC_FILE"]
os.makedirs(os.path.dirname(path), exist_ok=True)
reports = [("loss", (x - 1) ** 2)] + ([("size", x)] if x < 3 else [])
with open(path, "w") as f:
    for tag, value in reports:
        f.write(json.dumps({tag: str(value), "global_step": "1", "timestamp": time.time()}) + "\\n")
"""


def test_a_trial_missing_a_metric_is_infeasible(sdk: Any) -> None:
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    aiplatform = sdk
    job = aiplatform.HyperparameterTuningJob(
        display_name="two-metrics",
        custom_job=aiplatform.CustomJob(
            display_name="two-metrics-trial",
            worker_pool_specs=worker_pool([sys.executable, "-c", TRIAL]),
        ),
        metric_spec={"loss": "minimize", "size": "maximize"},
        parameter_spec={"x": hpt.DiscreteParameterSpec([0, 1, 2, 3], "linear")},
        search_algorithm="grid",
        max_trial_count=4,
        parallel_trial_count=2,
    )
    job.run()
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    by_x = {t.parameters[0].value: t for t in aiplatform.HyperparameterTuningJob.get(
        job.resource_name).trials}
    assert sorted(by_x) == [0, 1, 2, 3]
    for x in (0, 1, 2):
        t = by_x[x]
        assert t.state.name == "SUCCEEDED", t.infeasible_reason
        final = {m.metric_id: m.value for m in t.final_measurement.metrics}
        assert final == {"loss": (x - 1) ** 2, "size": x}
    missing = by_x[3]
    assert missing.state.name == "INFEASIBLE"
    assert missing.infeasible_reason.startswith("reported no metric 'size'")
    assert "['loss', 'size']" in missing.infeasible_reason
