"""Emulator latency and per-trial overhead, measured through the real aiplatform GAPIC REST client.

    python bench/emulator_latency.py [--requests N] [--trials N]

Prints p50/p95 of create and get (N custom jobs; each runs ``true``), and the per-trial overhead
of a tuning job: its wall time per trial (parallel 1, each trial a ``sh -c`` that writes the metric
file) against the same ``sh -c`` started directly, side by side, with the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARENT = "projects/bench/locations/us-central1"
IMAGE = "local/bench:latest"
WRITE_METRIC = 'echo \'{"value": "1.0", "global_step": "1"}\' > "$CLOUD_ML_HP_METRIC_FILE"'


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--trials", type=int, default=10)
    args = ap.parse_args()

    from google.cloud import aiplatform_v1
    from google.cloud.aiplatform_v1 import types

    from hydra_vertex.emulator import start
    from hydra_vertex.vertex import bearer_credentials

    with tempfile.TemporaryDirectory() as tmp:
        handle = start(Path(tmp) / "state", images={IMAGE: tmp}, seed=0)
        try:
            client = aiplatform_v1.JobServiceClient(
                transport="rest",
                client_options={"api_endpoint": handle.endpoint},
                credentials=bearer_credentials(handle.token),
            )
            pool = {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {"image_uri": IMAGE, "command": ["true"]},
            }
            creates, gets, names = [], [], []
            for i in range(args.requests):
                job = types.CustomJob(display_name=f"b{i}", job_spec={"worker_pool_specs": [pool]})
                t0 = time.perf_counter()
                names.append(client.create_custom_job(parent=PARENT, custom_job=job).name)
                creates.append(time.perf_counter() - t0)
            for name in names:
                t0 = time.perf_counter()
                client.get_custom_job(name=name)
                gets.append(time.perf_counter() - t0)
            for label, vals in (("create", creates), ("get", gets)):
                print(
                    f"{label:7s} p50 {1000 * _pct(vals, 50):7.2f} ms   "
                    f"p95 {1000 * _pct(vals, 95):7.2f} ms   (n={len(vals)})"
                )

            pool["container_spec"]["command"] = ["sh", "-c", WRITE_METRIC]
            hpt = types.HyperparameterTuningJob(
                display_name="overhead",
                max_trial_count=args.trials,
                parallel_trial_count=1,
                study_spec={
                    "metrics": [{"metric_id": "value", "goal": "MINIMIZE"}],
                    "parameters": [
                        {"parameter_id": "x", "double_value_spec": {"min_value": 0, "max_value": 1}}
                    ],
                    "algorithm": "RANDOM_SEARCH",
                },
                trial_job_spec={"worker_pool_specs": [pool]},
            )
            name = client.create_hyperparameter_tuning_job(
                parent=PARENT, hyperparameter_tuning_job=hpt
            ).name
            # a slow poll and the job's own create/end times: a fast poll perturbs the emulator
            # (every get renders the whole job) and rounds the end up to the poll period
            while (got := client.get_hyperparameter_tuning_job(name=name)).state.name != (
                "JOB_STATE_SUCCEEDED"
            ):
                time.sleep(0.25)
            wall = got.end_time.timestamp() - got.create_time.timestamp()
            per_trial = wall / args.trials
            direct = []
            for _ in range(args.trials):
                t1 = time.perf_counter()
                subprocess.run(
                    ["sh", "-c", WRITE_METRIC],
                    env={"CLOUD_ML_HP_METRIC_FILE": str(Path(tmp) / "m")},
                    check=True,
                )
                direct.append(time.perf_counter() - t1)
            base = statistics.median(direct)
            print(
                f"trial   emulator {1000 * per_trial:7.2f} ms/trial   direct {1000 * base:7.2f} ms"
                f"   overhead {1000 * (per_trial - base):7.2f} ms   ratio {per_trial / base:5.1f}x"
            )
        finally:
            handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
