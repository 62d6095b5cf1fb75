"""Bring your own Hydra app: real third-party layouts tuned unchanged with ``hydra-vertex run
--local`` (the installed CLI, the emulator, kfp.local), and each failure stopped or explained by its
deciding line.

- A vendored lightning-hydra-template layout (tests/apps/lightning_template) whose
  ``requirements.txt`` needs hydra-optuna-sweeper, so optuna below 3, which cannot share hydra-vertex's
  own environment (optuna 5): its trials run in the image's own environment (built once, cached in
  a fixed directory: tests/conftest.py), one value each, and the winner retrains.
- Failures: a failing app's deciding line reaches the terminal, SUMMARY.json, report.html and the
  console; a search-space typo fails in the pre-flight in seconds; a missing metric fails before
  anything runs.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_vertex import images

TESTS = Path(__file__).resolve().parent
LHT = TESTS / "apps" / "lightning_template"
REASONS_APP = TESTS / "apps" / "reasons_app"
DIGITS = TESTS.parent / "examples" / "digits"
CLI = Path(sys.executable).with_name("hydra-vertex")
ESC = "\x1b"


def _run(tmp: Path, job: Path, *args: str) -> subprocess.CompletedProcess[str]:
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_VERTEX_EMULATOR", "CLOUD_ML_"))}
    env.update(
        HYDRA_VERTEX_IMAGES=str(tmp / "images"),
        HYDRA_VERTEX_CACHE_DIR=str(tmp / "cache"),
        COLUMNS="250",  # the end-of-run table keeps each trial on one line
    )
    return subprocess.run(
        [str(CLI), "run", "--local", str(job), *args], cwd=work, env=env, capture_output=True,
        text=True, timeout=1200,
    )


def _job(tmp: Path, **data: Any) -> Path:
    job = tmp / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    return job


# -- a lightning-hydra-template app with its own environment -------------------------------------
@pytest.fixture(scope="module")
def lht(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("lht")
    job = _job(
        tmp,
        name="lht",
        app={"source": str(LHT), "command": ["python", "src/train.py", "hparams_search=mnist_optuna"]},
        search_space=str(LHT / "configs" / "hparams_search" / "mnist_optuna.yaml"),
        tuning={"max_trials": 2, "seed": 0},  # n_trials (20) would be the budget; n_jobs (1) is
        retrain={"overrides": ["trainer.max_epochs=2"]},
    )
    done = _run(tmp, job, "--output", "SUMMARY.json")
    summary = json.loads((tmp / "work" / "SUMMARY.json").read_text()) if done.returncode == 0 else {}
    return tmp, done, summary


@pytest.mark.slow
def test_the_template_is_tuned_unchanged_in_its_own_environment(
    lht: tuple[Path, subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    tmp, done, summary = lht
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The sweep config as written: the ignored key said once, the budget taken from n_jobs.
    assert done.stderr.count("'sampler' is ignored") == 1
    assert "tuning.parallel_trials=1 (from n_jobs)" in done.stderr
    assert "storage" not in done.stderr  # storage: null / study_name: null ask for nothing
    assert summary["status"] == "succeeded" and summary["metric"] == "val/acc_best"
    assert summary["direction"] == "maximize"
    # Its own environment, not hydra-vertex's: optuna 2 for the template's sweeper plugin.
    ref = summary["image_uri"]
    workdir = images.resolve_local(ref, tmp / "images")
    assert workdir is not None
    info = json.loads((workdir.parent / "image.json").read_text())
    assert info["environment"]["kind"] == "venv"
    assert info["environment"]["python"] != sys.executable
    trials = summary["trials"]
    assert [t["state"] for t in trials] == ["SUCCEEDED", "SUCCEEDED"]
    runs = tmp / "work" / ".hydra-vertex" / "emulator" / "runs"
    for t in trials:
        assert 0.0 < t["value"] <= 1.0
        out = Path(t["output_dir"])
        assert out.is_relative_to(runs) and out.name == "outputs"
        log = (out / "train.log").read_text()  # the template's file handler, in Hydra's output dir
        assert "optuna 2.10" in log and "hydra-optuna-sweeper 1.2.0" in log
        trial_dir = out.parent
        # One value per trial, and one line in its log saying why the MULTIRUN config ran once.
        assert len((trial_dir / "metrics" / "output.metrics").read_text().splitlines()) == 1
        warnings = [
            line for line in (trial_dir / "stderr.log").read_text().splitlines()
            if line.startswith("hydra-vertex: warning:")
        ]
        assert len(warnings) == 1 and "hydra.mode=MULTIRUN" in warnings[0]
        hydra_cfg = yaml.safe_load((out / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["mode"] == "RUN" and hydra_cfg["runtime"]["choices"]["hydra/sweeper"] == "optuna"
    # The winner retrained, once, in the same environment, its outputs under the run's directory.
    best = max(trials, key=lambda t: t["value"])
    assert summary["best_trial_id"] == best["id"]
    retrain = Path(summary["retrain_output_dir"])
    assert retrain.is_relative_to(runs)
    overrides = yaml.safe_load((retrain / ".hydra" / "overrides.yaml").read_text())
    assert overrides == ["hparams_search=mnist_optuna", *summary["best_overrides"], "trainer.max_epochs=2"]
    assert "optuna 2.10" in (retrain / "train.log").read_text()
    # The template writes no model: said in SUMMARY.json and on the terminal.
    assert summary["model_dir_empty"] is True and isinstance(summary["model_dir"], str)
    assert "the retrain wrote nothing under AIP_MODEL_DIR" in done.stdout
    # Nothing the runs wrote landed in the cached image; its snapshot followed the app's .gitignore.
    assert sorted(p.name for p in workdir.iterdir()) == [
        ".gitignore", ".project-root", "LICENSE", "VENDORED.md", "configs", "requirements.txt", "src",
    ]
    assert not list(workdir.rglob("*.log")) and not list(workdir.rglob(".hydra"))
    report = (tmp / "work" / "report.html").read_text()
    assert ESC not in report and ESC not in (tmp / "work" / "SUMMARY.json").read_text()
    assert html.escape(trials[0]["output_dir"]) in report and html.escape(str(retrain)) in report


# -- failures ------------------------------------------------------------------------------------
DECIDING = (
    "hydra-vertex: the task function returned a mapping without the key 'val_accuracy' (available "
    "keys: 'val_loss', 'acc'); set the callback's key or metric to one of them (exit code 1)"
)


@pytest.mark.slow
def test_the_deciding_line_reaches_every_place_a_person_looks(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "metric: val_accuracy\ndirection: maximize\nparams:\n  lr: interval(0.01, 1.0)\n"
    )
    job = _job(
        tmp_path,
        name="coloured",
        app={"source": str(REASONS_APP), "command": ["python", "app.py", "needed=1", "+fail=coloured"]},
        search_space="s.yaml",
        tuning={"max_trials": 2, "parallel_trials": 2, "seed": 0},
    )
    done = _run(tmp_path, job, "--output", "SUMMARY.json")
    assert done.returncode == 1
    # The terminal: progress lines, the end-of-run table, and the final error.
    assert f"INFEASIBLE {DECIDING}" in done.stdout
    table_rows = [line for line in done.stdout.splitlines() if "│" in line and "INFEASIBLE" in line]
    assert len(table_rows) == 2 and all(DECIDING in row for row in table_rows)
    error = done.stderr.strip().splitlines()
    assert error[0].startswith("hydra-vertex run: error: the run failed: ")
    assert any(DECIDING in line for line in error)
    assert "Traceback" not in done.stderr
    # SUMMARY.json: the error and each trial's reason.
    text = (tmp_path / "work" / "SUMMARY.json").read_text()
    summary = json.loads(text)
    assert DECIDING in summary["error"]
    assert [t["reason"] for t in summary["trials"]] == [DECIDING, DECIDING]
    assert all(t["infeasible_reason"].startswith(DECIDING + "\nlast log lines:\n") for t in summary["trials"])
    # The report and the emulator's console.
    report = (tmp_path / "work" / "report.html").read_text()
    assert html.escape(DECIDING) in report
    from hydra_vertex.emulator import console
    from hydra_vertex.emulator.store import Store

    store = Store(tmp_path / "work" / ".hydra-vertex" / "emulator")
    try:
        job_id = summary["tuning_job"].rsplit("/", 1)[1]
        status, _, page = console.render(store, f"/console/hyperparameterTuningJobs/{job_id}", {})
        log_status, _, log_page = console.render(
            store, f"/console/hyperparameterTuningJobs/{job_id}/trials/1/log", {}
        )
    finally:
        store.close()
    assert status == 200 and html.escape(DECIDING) in page.decode()
    assert log_status == 200 and "no val_accuracy this epoch" in log_page.decode()
    # The app's colours stay in its own log file, and nowhere else.
    trial_log = Path(summary["trial_logs"]) / "1" / "stderr.log"
    assert ESC in trial_log.read_text()
    for where, content in {
        "stdout": done.stdout, "stderr": done.stderr, "SUMMARY.json": text, "report.html": report,
        "console": page.decode(), "console log": log_page.decode(),
    }.items():
        assert ESC not in content, where


def _digits_job(tmp_path: Path, params: dict[str, Any], **top: Any) -> Path:
    space = {"direction": "minimize", "params": params, **top}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(space))
    return _job(
        tmp_path,
        name="digits",
        app={"source": str(DIGITS), "command": ["python", "train.py"]},
        search_space="s.yaml",
        tuning={"max_trials": 2, "parallel_trials": 2},
    )


def test_a_space_typo_fails_in_the_preflight_naming_the_nearest_key(tmp_path: Path) -> None:
    job = _digits_job(
        tmp_path,
        {
            "model": "choice(sgd, svm)",
            "model.alpha": {"when": {"model": ["sgd"]}, "values": "tag(log, interval(1e-6, 1e-1))"},
            "model.c": {"when": {"model": ["svm"]}, "values": "tag(log, interval(0.1, 100.0))"},
        },
        metric="val_error",
    )
    done = _run(tmp_path, job)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("hydra-vertex run: error: pre-flight: parameter 'model.c' of ")
    assert "(conf/model/svm.yaml, composed with model=svm model.c=0.1)" in line
    assert "the closest existing key is 'model.C'" in line and "'+model.c'" in line
    assert "pre-flight" not in done.stdout  # it failed: no "composes" line
    assert not (tmp_path / "work" / ".hydra-vertex" / "emulator").exists()  # no trial, no emulator


def test_a_missing_metric_fails_before_anything_runs(tmp_path: Path) -> None:
    job = _digits_job(tmp_path, {"trainer.max_iter": "int(interval(5, 60))"})
    done = _run(tmp_path, job)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"hydra-vertex run: error: {tmp_path / 's.yaml'}: 'metric' is missing")
    assert not (tmp_path / "images").exists() and not (tmp_path / "work" / ".hydra-vertex").exists()


@pytest.mark.slow
def test_requirements_that_conflict_with_the_core_fail_the_build_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "train.py").write_text("print('never runs')\n")
    (app / "requirements.txt").write_text("hydra-core==1.1.0\n")
    (tmp_path / "s.yaml").write_text("metric: m\ndirection: minimize\nparams:\n  lr: interval(0.1, 1)\n")
    job = _job(tmp_path, name="old-hydra", app={"source": str(app), "command": ["python", "train.py"]}, search_space="s.yaml")
    done = _run(tmp_path, job)
    assert done.returncode == 1
    assert "image: building the image's Python environment from" in done.stdout  # progress, as lines
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"hydra-vertex run: error: building the image's environment from {app / 'requirements.txt'} failed: ")
    assert "hydra-core==1.1.0" in line and "hydra-core>=1.3.2" in line  # the installer's own words
    assert "the installer's log: " in line

    # A site's constraint file (PIP_CONSTRAINT) holds in the image's environment too.
    from hydra_vertex import envs
    from hydra_vertex.images import ImageError

    (app / "requirements.txt").write_text("pyyaml\n")
    pins = tmp_path / "pins.txt"
    pins.write_text("pyyaml==5.1\n")
    monkeypatch.setenv("PIP_CONSTRAINT", str(pins))
    with pytest.raises(ImageError, match=r"pyyaml==5\.1"):
        envs.ensure(app / "requirements.txt")
