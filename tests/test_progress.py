"""Progress of `hydra-vertex run --local`: a live panel on a terminal (tested on a pseudo-terminal),
plain lines in a pipe, nothing with --quiet; and the Display itself on hand-made snapshots."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_vertex.progress import Display, Snapshot, Watcher, best_of
from hydra_vertex.trials import TrialResult

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
CLI = Path(sys.executable).with_name("hydra-vertex")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TRIALS = 4


def _t(tid: str, state: str, value: float | None, reason: str = "", **params: object) -> TrialResult:
    return TrialResult(tid, state, dict(params), value, reason)


# -- the Display on snapshots (fast) ------------------------------------------------------------


def test_lines_mode_prints_each_finished_trial_once_with_the_best_so_far() -> None:
    out = io.StringIO()
    snap = Snapshot(stage="tuning", max_trials=3)
    with Display("lines", "loss", out) as display:
        snap.trials = [_t("1", "SUCCEEDED", 0.5, lr=0.1), _t("2", "ACTIVE", None)]
        snap.best = best_of(snap.trials, minimize=True)
        display.update(snap)
        display.update(snap)  # nothing new: nothing printed
        snap.trials = [
            _t("1", "SUCCEEDED", 0.5, lr=0.1),
            _t("2", "INFEASIBLE", None, "trial crashed (exit 1); last log lines:\nValueError: boom"),
            _t("3", "SUCCEEDED", 0.25, lr=0.01),
        ]
        snap.best = best_of(snap.trials, minimize=True)
        display.update(snap)
    lines = out.getvalue().splitlines()
    assert lines[0] == "trial   1 SUCCEEDED  loss=0.5 (best 0.5, trial 1) [1/3]"
    assert lines[1] == "[tuning]"
    assert lines[2].startswith("trial   2 INFEASIBLE trial crashed (exit 1): ValueError: boom")
    assert lines[3] == "trial   3 SUCCEEDED  loss=0.25 (best 0.25, trial 3) [3/3]"
    assert len(lines) == 4
    assert not ANSI.search(out.getvalue())


def test_lines_show_each_trials_gpus_the_stopped_ones_and_each_warning_once() -> None:
    from dataclasses import replace

    out = io.StringIO()
    warning = "warning: the job asks for 2 x NVIDIA_TESLA_T4 per trial but this machine has no GPU"
    snap = Snapshot(stage="tuning", max_trials=2, warnings=[warning])
    with Display("lines", "loss", out) as display:
        snap.trials = [replace(_t("1", "ACTIVE", None), devices=("0", "1")),
                       replace(_t("2", "ACTIVE", None), devices=())]  # no GPU asked for
        display.update(snap)
        display.update(snap)
        snap.trials = [
            replace(_t("1", "SUCCEEDED", 3.0), devices=("0", "1"), stopped_early=True),
            replace(_t("2", "SUCCEEDED", 0.5), devices=()),
        ]
        snap.best = best_of(snap.trials, minimize=True)
        display.update(snap)
    assert out.getvalue().splitlines() == [
        f"hydra-vertex emulator: {warning}",
        "[tuning]",
        "trial   1 ACTIVE     on GPU 0,1",
        "trial   1 SUCCEEDED  loss=3 (stopped early) (best 0.5, trial 2) [2/2] on GPU 0,1",
        "trial   2 SUCCEEDED  loss=0.5 (best 0.5, trial 2) [2/2]",
    ]


def test_the_live_panel_shows_where_trials_run_and_the_warnings() -> None:
    from dataclasses import replace

    from rich.console import Console

    snap = Snapshot(stage="tuning", max_trials=4, warnings=["warning: no GPU"])
    snap.trials = [replace(_t("3", "ACTIVE", None), devices=("2", "3")),
                   replace(_t("4", "ACTIVE", None), devices=("0", "1"))]
    out = io.StringIO()
    Console(file=out, width=100, force_terminal=False).print(
        Display("live", "loss", io.StringIO())._panel(snap)
    )
    assert "running: trial 3 on GPU 2,3 · trial 4 on GPU 0,1" in out.getvalue()
    assert "warning: no GPU" in out.getvalue()


def test_quiet_mode_prints_nothing() -> None:
    out = io.StringIO()
    with Display("quiet", "loss", out) as display:
        display.update(Snapshot(stage="tuning", max_trials=1, trials=[_t("1", "SUCCEEDED", 1.0)]))
    assert out.getvalue() == ""


def test_live_panel_shows_counts_best_elapsed_and_what_remains() -> None:
    from rich.console import Console

    snap = Snapshot(stage="tuning", max_trials=4, started=time.monotonic() - 10)
    snap.trials = [
        _t("1", "SUCCEEDED", 0.3, lr=0.1),
        _t("2", "INFEASIBLE", None, "crash"),
        _t("3", "ACTIVE", None),
    ]
    snap.best = best_of(snap.trials, minimize=True)
    display = Display("live", "val_loss", io.StringIO())
    out = io.StringIO()
    Console(file=out, width=100, force_terminal=False).print(display._panel(snap))
    text = out.getvalue()
    assert "trials 2/4" in text and "1 running" in text and "1 done" in text and "1 failed" in text
    assert "best val_loss=0.3 (trial 1): lr=0.1" in text
    assert re.search(r"tuning · 1\ds · ~1\ds left", text), text


def test_the_estimate_uses_the_pace_since_tuning_began_not_the_build() -> None:
    from hydra_vertex.progress import _eta

    snap = Snapshot(stage="tuning", max_trials=10, started=time.monotonic() - 100)
    snap.trials = [_t(str(i), "SUCCEEDED", 1.0) for i in range(1, 6)]
    # 100 s since the run began for 5 trials: 20 s a trial, 100 s for the 5 left
    assert _eta(snap, 100.0) == " · ~100s left"
    # but tuning was first seen 10 s ago with 3 done: 2 trials in 10 s, so 25 s for the 5 left
    assert _eta(snap, 100.0, since=(time.monotonic() - 10, 3)) == " · ~25s left"
    assert _eta(Snapshot(stage="retraining", max_trials=10, trials=snap.trials), 100.0) == ""
    snap.stage = "job-1: tuning"  # the emulator's stage names the job
    assert _eta(snap, 100.0) == " · ~100s left"


def test_watcher_survives_a_failing_fetch_and_shows_the_final_state() -> None:
    out = io.StringIO()
    calls = {"n": 0}

    def fetch() -> Snapshot:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("emulator busy")
        return Snapshot(stage="tuning", max_trials=1, trials=[_t("1", "SUCCEEDED", 2.0)])

    with Display("lines", "m", out) as display:
        watcher = Watcher(fetch, display, interval=0.01)
        watcher.start()
        time.sleep(0.1)
        watcher.stop()
    assert out.getvalue().count("trial   1 SUCCEEDED") == 1


# -- the real command on a pseudo-terminal and in a pipe (slow) ---------------------------------


def small_digits_job(tmp: Path, trials: int = TRIALS) -> Path:
    """A copy of the digits example under ``tmp`` with a budget of ``trials`` (2 at a time).
    (The browser tests use it too.)"""
    app = tmp / "digits"
    shutil.copytree(DIGITS, app, ignore=shutil.ignore_patterns("outputs", "__pycache__"))
    job = yaml.safe_load((app / "job.yaml").read_text())
    job["tuning"]["max_trials"] = trials
    job["tuning"]["parallel_trials"] = 2
    (app / "job.yaml").write_text(yaml.safe_dump(job))
    return app / "job.yaml"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_")}
    env.pop("NO_COLOR", None)
    env.update(
        HYDRA_VERTEX_IMAGES=str(tmp / "images"),
        HYDRA_VERTEX_CACHE_DIR=str(tmp / "cache"),
        TERM="xterm-256color",
        COLUMNS="120",
        LINES="40",
    )
    return env


def _run_on_pty(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    master, slave = pty.openpty()
    import fcntl

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait(timeout=30)
    return rc, b"".join(chunks).decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def small_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_digits_job(tmp_path_factory.mktemp("progress"))


@pytest.mark.slow
def test_on_a_terminal_the_live_panel_updates_then_gives_way_to_the_summary(
    small_job: Path, tmp_path: Path
) -> None:
    rc, out = _run_on_pty(
        [str(CLI), "run", "--local", str(small_job), "-o", "SUMMARY.json",
         "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path, env=_env(tmp_path),
    )
    (tmp_path / "pty.log").write_text(out)
    assert rc == 0, out[-3000:]
    assert "\x1b[?25l" in out  # rich's live display hides the cursor while it redraws
    plain = ANSI.sub("", out)
    # the panel was redrawn as the run went on: several stages and trial counts were shown
    counts = {int(m) for m in re.findall(rf"trials (\d)/{TRIALS} ·", plain)}
    assert len(counts) >= 2 and max(counts) >= 1, sorted(counts)
    assert "hydra-vertex building image" in plain or "hydra-vertex tuning" in plain
    assert re.search(r"best val_error=[0-9.e-]+ \(trial \d+\): model=", plain)
    # it ends with the summary table, and no panel after it
    summary_at = plain.rindex("best trial ")
    assert plain.index(f"digits: {TRIALS} trials (minimize val_error)") < summary_at
    assert "running ·" not in plain[plain.index(f"digits: {TRIALS} trials"):]
    assert "summary: SUMMARY.json" in plain[summary_at:]


@pytest.mark.slow
def test_in_a_pipe_there_is_no_panel_only_lines_and_with_quiet_nothing(
    small_job: Path, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    done = subprocess.run(
        [str(CLI), "run", "--local", str(small_job), "-o", "SUMMARY.json",
         "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not ANSI.search(done.stdout), done.stdout[:500]
    trial_lines = [line for line in done.stdout.splitlines() if re.match(r"trial +\d+ ", line)]
    assert len(trial_lines) == TRIALS, done.stdout
    assert all(re.search(rf"\[\d/{TRIALS}\]$", line) for line in trial_lines)
    assert "running ·" not in done.stdout
    assert "best trial " in done.stdout

    quiet = subprocess.run(
        [str(CLI), "run", "--local", str(small_job), "--quiet", "-o", "SUMMARY2.json",
         "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout == "" and quiet.stderr == ""
    assert (tmp_path / "SUMMARY2.json").exists()


# -- the emulator's own progress, from its API ---------------------------------------------------


def _tuning_job(name: str, state: str, created: str, trials: list[dict[str, object]]) -> Any:
    from google.cloud.aiplatform_v1.types import HyperparameterTuningJob

    return HyperparameterTuningJob.from_json(json.dumps({
        "name": f"projects/p/locations/l/hyperparameterTuningJobs/{name}",
        "displayName": f"job-{name}", "state": state, "createTime": created, "startTime": created,
        "maxTrialCount": 3,
        "studySpec": {"metrics": [{"metricId": "acc", "goal": "MAXIMIZE"}]},
        "trials": trials,
    }))


def _trial(tid: str, state: str, acc: float | None = None, **params: object) -> dict[str, object]:
    t: dict[str, object] = {
        "id": tid, "state": state,
        "parameters": [{"parameterId": k, "value": v} for k, v in params.items()],
    }
    if acc is not None:
        t["finalMeasurement"] = {"metrics": [{"metricId": "acc", "value": acc}]}
    return t


def test_emulator_progress_follows_the_running_job(tmp_path: Path) -> None:
    from hydra_vertex.progress import emulator_progress, tuning_snapshot

    assert tuning_snapshot([]) is None
    jobs = [
        _tuning_job("1", "JOB_STATE_SUCCEEDED", "2026-01-01T00:00:00Z",
                    [_trial("1", "SUCCEEDED", 0.5, lr=0.1)]),
        _tuning_job("2", "JOB_STATE_RUNNING", "2025-01-01T00:00:00Z",
                    [_trial("1", "SUCCEEDED", 0.7, lr=0.01), _trial("2", "ACTIVE", lr=0.5)]),
    ]
    found = tuning_snapshot(jobs)
    assert found is not None
    job, metric, snap = found
    assert job.endswith("/2") and metric == "acc"  # the running one, though older
    assert snap.stage == "job-2: tuning" and snap.max_trials == 3
    assert snap.best is not None and snap.best.id == "1" and snap.best.value == 0.7
    assert snap.count("ACTIVE") == 1

    out = io.StringIO()
    with emulator_progress(lambda: list(jobs), out, mode="auto", interval=0.05):  # lines mode
        time.sleep(0.3)
        jobs[1] = _tuning_job("2", "JOB_STATE_SUCCEEDED", "2025-01-01T00:00:00Z",
                              [_trial("1", "SUCCEEDED", 0.7, lr=0.01),
                               _trial("2", "SUCCEEDED", 0.9, lr=0.5)])
        time.sleep(0.3)
    text = out.getvalue()
    assert "trial   1 SUCCEEDED  acc=0.7 (best 0.7, trial 1) [1/3]" in text
    assert "trial   2 SUCCEEDED  acc=0.9 (best 0.9, trial 2) [2/3]" in text
    assert "[job-2: tuning]" in text and not ANSI.search(text)
    quiet = io.StringIO()
    with emulator_progress(lambda: jobs, quiet, mode="quiet"):
        time.sleep(0.1)
    assert quiet.getvalue() == ""
