"""A hyperparameter tuning job: create, run, get with its trials."""

from __future__ import annotations

from typing import Any

from _backend import Backend

# A trial reads --x=<value> (or --x <value>) and reports (x - 1)^2 as cloudml-hypertune does:
# a JSON line in CLOUD_ML_HP_METRIC_FILE (the default path when unset).
TRIAL = """
import json, os, sys, time
args = sys.argv[1:]
x = next(float(a.split("=", 1)[1]) if "=" in a else float(args[i + 1])
         for i, a in enumerate(args) if a.split("=", 1)[0] == "--x")
path = os.environ.get("CLOUD_ML_HP_METRIC_FILE") or "/tmp/hypertune/output.metrics"
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    f.write(json.dumps({"loss": str((x - 1) ** 2), "global_step": "1",
                        "timestamp": time.time()}) + "\\n")
"""


def test_create_run_get_with_trials(aiplatform: Any, backend: Backend) -> None:
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    job = aiplatform.HyperparameterTuningJob(
        display_name="contract-tuning",
        custom_job=aiplatform.CustomJob(
            display_name="contract-trial", worker_pool_specs=backend.worker_pool(TRIAL)
        ),
        metric_spec={"loss": "minimize"},
        parameter_spec={"x": hpt.DoubleParameterSpec(-2, 3, "linear")},
        max_trial_count=2,
        parallel_trial_count=2,
    )
    job.run()
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    got = aiplatform.HyperparameterTuningJob.get(job.resource_name)
    assert got.display_name == "contract-tuning"
    trials = got.trials
    assert len(trials) == 2 and len({t.id for t in trials}) == 2
    for t in trials:
        assert t.state.name == "SUCCEEDED", t.infeasible_reason
        [param] = t.parameters
        assert param.parameter_id == "x" and -2 <= param.value <= 3
        [metric] = t.final_measurement.metrics
        assert metric.metric_id == "loss"
        assert abs(metric.value - (param.value - 1) ** 2) < 1e-6
        # each trial ran as a CustomJob of its own, which can be read; no web access was asked
        assert "/customJobs/" in t.custom_job, t.custom_job
        trial_job = aiplatform.CustomJob.get(t.custom_job)
        assert trial_job.state.name == "JOB_STATE_SUCCEEDED"
        assert not t.web_access_uris
    listed = aiplatform.HyperparameterTuningJob.list(filter='display_name="contract-tuning"')
    assert job.resource_name in [j.resource_name for j in listed]
