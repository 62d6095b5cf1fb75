"""GPU-aware trials and early stopping through ``hydra-vertex run --local``, as a user runs it
(slow: real trials, the pipeline under kfp.local).

Four fake GPUs (``HYDRA_VERTEX_GPUS=0,1,2,3``); 8 trials of ``tests/apps/curve_app`` asking for
2 each, 4 allowed in parallel, median early stopping. The app records the devices it was given
and when it ran; its learning curve is a function of its parameter, so which trials are stopped
does not depend on timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

CURVE_APP = Path(__file__).parent / "apps" / "curve_app"
CLI = Path(sys.executable).with_name("hydra-vertex")

pytestmark = pytest.mark.slow


def _job(tmp: Path, record: Path) -> Path:
    data: dict[str, Any] = {
        "name": "curves",
        "app": {
            "source": str(CURVE_APP),
            # 40 epochs of 0.1 s: a trial that is not stopped runs about 4 s
            "command": ["python", "app.py", f"record_dir={record}", "epochs=40",
                        "epoch_seconds=0.1"],
        },
        "search_space": str(CURVE_APP / "space.yaml"),
        "tuning": {
            "max_trials": 8,
            "parallel_trials": 4,
            "algorithm": "grid",  # rate 0, 1, ..., 7 in order: trials 1 and 2 are the best
            "early_stopping": "median",
            "timeout_seconds": 120,
        },
        "retrain": {"overrides": ["epochs=2", "name=retrain"], "vertex": {"accelerator_count": 0}},
        "vertex": {
            "project": "local-project",
            "region": "us-central1",
            "staging_bucket": "gs://hydra-vertex-local/curves",
            "accelerator_type": "NVIDIA_TESLA_T4",
            "accelerator_count": 2,
        },
    }
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("gpus")
    record = tmp / "record"
    record.mkdir()
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_")}
    env.update(
        HYDRA_VERTEX_IMAGES=str(tmp / "images"),
        HYDRA_VERTEX_CACHE_DIR=str(tmp / "cache"),
        HYDRA_VERTEX_GPUS="0,1,2,3",
    )
    done = subprocess.run(
        [str(CLI), "run", "--local", str(_job(tmp, record)), "--output", "SUMMARY.json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    return tmp, done


def _records(tmp: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in (tmp / "record").glob("*.json")}


def test_every_trial_gets_two_gpus_of_its_own_and_at_most_two_run_at_once(
    run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    tmp, done = run
    assert done.returncode == 0, done.stdout + done.stderr
    records = _records(tmp)
    trials = {k: v for k, v in records.items() if k.isdigit()}
    assert sorted(trials, key=int) == [str(i) for i in range(1, 9)]
    for tid, r in trials.items():
        devices = r["cuda"].split(",")
        assert len(devices) == 2 and set(devices) <= {"0", "1", "2", "3"}, (tid, r)
        assert r["nvidia"] == r["cuda"]
        assert r["end"] is not None and r["end"] > r["start"]
    for (a, ra), (b, rb) in combinations(trials.items(), 2):
        if ra["start"] < rb["end"] and rb["start"] < ra["end"]:  # they ran at the same time
            assert not set(ra["cuda"].split(",")) & set(rb["cuda"].split(",")), (a, b, ra, rb)
    moments = sorted([(r["start"], 1) for r in trials.values()] + [(r["end"], -1) for r in
                     trials.values()])
    running, most = 0, 0
    for _, change in moments:
        running += change
        most = max(most, running)
    assert most <= 2
    # The retrain asked for no accelerator: on a machine with GPUs it sees none.
    assert records["retrain"]["cuda"] == "" and records["retrain"]["nvidia"] == "void"

    summary = json.loads((tmp / "work" / "SUMMARY.json").read_text())
    for t in summary["trials"]:
        assert t["devices"] == trials[t["id"]]["cuda"].split(","), t
    # The progress lines say where each trial runs.
    assert " on GPU " in done.stdout


def test_median_stopping_stops_the_poor_trials_and_the_summary_shows_what_it_saved(
    run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    tmp, done = run
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp / "work" / "SUMMARY.json").read_text())
    trials = {t["id"]: t for t in summary["trials"]}
    assert all(t["state"] == "SUCCEEDED" for t in trials.values())
    # rate 0 and 1 run to the end (the median needs two completed trials); rate 2..7 are worse
    # than the median at every epoch, so each is stopped at the first epoch it is judged
    assert [tid for tid, t in trials.items() if t["stopped_early"]] == [str(i) for i in range(3, 9)]
    for tid in ("1", "2"):
        assert trials[tid]["value"] == pytest.approx(float(int(tid) - 1) + 1 / 40)
        assert trials[tid]["saved_steps"] is None
    for tid in map(str, range(3, 9)):
        t = trials[tid]
        assert "worse than median" in t["stop_reason"]
        assert t["saved_steps"] > 0 and t["saved_seconds"] > 0
        assert _records(tmp)[tid]["stopped"] is True  # it was stopped, it did not finish
    totals = summary["early_stopping"]
    assert totals["stopped_trials"] == 6
    assert totals["saved_steps"] == sum(trials[str(i)]["saved_steps"] for i in range(3, 9))
    assert summary["best_trial_id"] == "1"
    assert "(stopped early)" in done.stdout
    report = Path(summary["report"]).read_text()
    assert report.count('data-stopped-early="true"') == 6
