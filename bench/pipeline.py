"""C. Pipeline overhead: the wall clock of ``hydra-vertex run --local`` on the digits example
against the work it has to do, i.e. the sum of its trials' own durations divided by the
parallelism, plus the retrain's duration (trial and job start/end times from the emulator state).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "examples" / "digits" / "job.yaml"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run(work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    cli = shutil.which("hydra-vertex", path=str(Path(sys.executable).parent)) or "hydra-vertex"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_EMULATOR")}
    summary = work / "S.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [cli, "run", "--local", str(JOB), "--output", str(summary), "--quiet"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"hydra-vertex run --local failed:\n{proc.stderr[-2000:]}")
    s = json.loads(summary.read_text())
    jobs = work / ".hydra-vertex" / "emulator" / "jobs"
    tuning = [
        json.loads(p.read_text())["resource"] for p in jobs.glob("hyperparameterTuningJobs/*.json")
    ]
    custom = [json.loads(p.read_text())["resource"] for p in jobs.glob("customJobs/*.json")]
    trials = [t for job in tuning for t in job.get("trials", [])]
    parallel = max(int(job.get("parallelTrialCount") or 1) for job in tuning)
    trial_time = sum(_ts(t["endTime"]) - _ts(t["startTime"]) for t in trials)
    retrain = sum(_ts(j["endTime"]) - _ts(j["startTime"]) for j in custom if j.get("startTime"))
    tuning_wall = sum(_ts(j["endTime"]) - _ts(j["createTime"]) for j in tuning)
    ideal = trial_time / parallel + retrain
    return {
        "wall": wall,
        "elapsed_seconds": s.get("elapsed_seconds"),
        "trials": len(trials),
        "parallel": parallel,
        "trial_seconds_sum": trial_time,
        "retrain_seconds": retrain,
        "tuning_job_seconds": tuning_wall,
        "ideal_seconds": ideal,
        "pipeline_overhead_ratio": wall / ideal,
    }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(Path(tmp)), indent=1))
