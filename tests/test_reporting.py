"""Reporting: the Hydra callback, report() and the W&B trial variables.

The apps are real Hydra apps (tests/apps/report_app) run as subprocesses with the callback switched on
by overrides, exactly as the shim does; the metric file is written by the real cloudml-hypertune.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_vertex import reporting
from hydra_vertex.errors import ReportingError
from hydra_vertex.reporting import check_objective, objective_from_return, report, wandb_trial_env

APP = Path(__file__).parent / "apps" / "report_app" / "app.py"
CALLBACK = [
    "+hydra.callbacks.hydra_vertex_report._target_=hydra_vertex.reporting.ReportCallback",
    "+hydra.callbacks.hydra_vertex_report.metric=val_loss",
]


def _clean_env() -> dict[str, str]:
    drop = ("CLOUD_ML_", "WANDB_", "HYDRA_VERTEX_METRIC", "AIP_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def run_app(
    tmp_path: Path, *overrides: str, env: dict[str, str] | None = None, multirun: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    metrics = tmp_path / "metrics"
    full_env = _clean_env()
    full_env["CLOUD_ML_HP_METRIC_FILE"] = str(metrics)
    full_env.update(env or {})
    proc = subprocess.run(
        [
            *(sys.executable, str(APP), *(["-m"] if multirun else [])),
            *(*CALLBACK, f"hydra.run.dir={tmp_path / 'run'}", *overrides),
        ],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    entries = (
        [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        if metrics.exists()
        else []
    )
    return proc, entries


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(["mode=float"], [("0.25", "0")], id="float"),
        pytest.param(["mode=float", "value=3"], [("3.0", "0")], id="int-config-value"),
        pytest.param(["mode=dict"], [("0.25", "0")], id="dict-by-metric"),
        pytest.param(
            ["mode=dict", "+hydra.callbacks.hydra_vertex_report.key=acc"],
            [("0.9", "0")],
            id="dict-by-key",
        ),
        pytest.param(
            ["mode=epochs"],
            [("1.0", "0"), ("0.5", "1"), ("0.3333333333333333", "2"), ("0.25", "3")],
            id="intermediate-then-final",
        ),
    ],
)
def test_final_value_is_reported(
    tmp_path: Path, overrides: list[str], expected: list[tuple[str, str]]
) -> None:
    proc, entries = run_app(tmp_path, *overrides, env={"CLOUD_ML_TRIAL_ID": "4"})
    assert proc.returncode == 0, proc.stderr
    assert [(e["val_loss"], e["global_step"]) for e in entries] == expected
    assert all(e["trial"] == "4" for e in entries)
    assert all(
        set(e) == {"val_loss", "global_step", "trial", "timestamp", "checkpoint_path"}
        for e in entries
    )


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        pytest.param("nan", "the objective is nan", id="nan"),
        pytest.param("inf", "the objective is inf", id="inf"),
        pytest.param("none", "the objective is None", id="none"),
        pytest.param("string", "is not a real number", id="string"),
        pytest.param(
            "missing",
            "without the key 'val_loss' (available keys: 'loss', 'acc')",
            id="missing-key",
        ),
    ],
)
def test_invalid_objective_fails_the_trial(tmp_path: Path, mode: str, message: str) -> None:
    proc, entries = run_app(tmp_path, f"mode={mode}")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("hydra-vertex:")]
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert entries == []


def test_failing_task_reports_nothing(tmp_path: Path) -> None:
    proc, entries = run_app(tmp_path, "mode=raise")
    assert proc.returncode != 0
    assert "training diverged" in proc.stderr
    assert "hydra-vertex:" not in proc.stderr
    assert entries == []


def run_trial_app(
    tmp_path: Path, env: dict[str, str], *overrides: str
) -> tuple[dict[str, str], list[str]]:
    """Run the app as trial ``env`` says; return the WANDB_* variables it saw and its trial ids."""
    out = tmp_path / "wandb.json"
    proc, entries = run_app(tmp_path, *overrides, env={**env, "REPORT_APP_WANDB_OUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), [e["trial"] for e in entries]


def test_wandb_variables_reach_the_app(tmp_path: Path) -> None:
    env = {
        "CLOUD_ML_TRIAL_ID": "12",
        "CLOUD_ML_JOB_ID": "987",
        "WANDB_NAME": "users-own-name",
        "NETRC": str(tmp_path / "no-netrc"),  # no W&B API key anywhere: offline
        "WANDB_TAGS": "weekly",  # the job file's tags come first
    }
    seen, trials = run_trial_app(tmp_path, env, "mode=float", "lr=0.01", "+note='a, b'")
    params_file = tmp_path / "run" / "wandb_trial_config.yaml"
    assert seen == {
        "WANDB_NAME": "users-own-name",
        "WANDB_RUN_GROUP": "987",
        "WANDB_JOB_TYPE": "hpt-trial",
        "WANDB_TAGS": "weekly,lr=0.01,mode=float,note=a; b",
        "WANDB_MODE": "offline",
        "WANDB_SWEEP_PARAM_PATH": str(params_file.resolve()),
    }
    assert yaml.safe_load(params_file.read_text()) == {
        "wandb_version": 1,
        "lr": {"value": 0.01},
        "mode": {"value": "float"},
        "note": {"value": "a, b"},
        "hpt_trial_id": {"value": "12"},
        "hpt_job_id": {"value": "987"},
    }
    assert trials == ["12"]


def test_wandb_disabled_in_a_trial(tmp_path: Path) -> None:
    env = {"CLOUD_ML_TRIAL_ID": "4", "WANDB_DISABLED": "true", "WANDB_MODE": "offline"}
    seen, trials = run_trial_app(tmp_path, env, "mode=float")
    assert seen["WANDB_MODE"] == "disabled"
    assert "WANDB_SWEEP_PARAM_PATH" not in seen
    assert not (tmp_path / "run" / "wandb_trial_config.yaml").exists()
    assert trials == ["4"]


def test_no_wandb_variables_outside_a_trial(tmp_path: Path) -> None:
    out = tmp_path / "wandb.json"
    proc, _ = run_app(tmp_path, "mode=float", env={"REPORT_APP_WANDB_OUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == {}


TRIAL = {"CLOUD_ML_TRIAL_ID": "3", "CLOUD_ML_JOB_ID": "555"}


@pytest.mark.parametrize(
    ("environ", "params", "expected"),
    [
        pytest.param({}, {"lr": 0.1}, {}, id="not-a-trial"),
        pytest.param(
            TRIAL,
            {"lr": 0.1, "model": "cnn"},
            {
                "WANDB_RUN_GROUP": "555",
                "WANDB_NAME": "trial-3",
                "WANDB_JOB_TYPE": "hpt-trial",
                "WANDB_TAGS": "lr=0.1,model=cnn",
            },
            id="all",
        ),
        pytest.param(
            {**TRIAL, "WANDB_RUN_GROUP": "mine", "WANDB_TAGS": "x", "WANDB_JOB_TYPE": "t"},
            {"lr": 0.1},
            {"WANDB_NAME": "trial-3", "WANDB_TAGS": "x,lr=0.1"},
            id="user-set-kept-tags-merged",
        ),
        pytest.param(
            {**TRIAL, "WANDB_TAGS": "lr=0.1,weekly", "HYDRA_VERTEX_WANDB_TAGS": "weekly,old"},
            {"lr": 0.1},
            {
                "WANDB_RUN_GROUP": "555",
                "WANDB_NAME": "trial-3",
                "WANDB_JOB_TYPE": "hpt-trial",
                "WANDB_TAGS": "lr=0.1,weekly,old",
            },
            id="tags-not-repeated",
        ),
        pytest.param(
            {"CLOUD_ML_TRIAL_ID": "3"},
            None,
            {"WANDB_NAME": "trial-3", "WANDB_JOB_TYPE": "hpt-trial"},
            id="no-job-no-params",
        ),
        pytest.param(
            TRIAL,
            {"name": "x" * 100},
            {
                "WANDB_RUN_GROUP": "555",
                "WANDB_NAME": "trial-3",
                "WANDB_JOB_TYPE": "hpt-trial",
                "WANDB_TAGS": "name=" + "x" * 59,
            },
            id="tag-truncated-to-64",
        ),
    ],
)
def test_wandb_trial_env(
    environ: dict[str, str], params: dict[str, object] | None, expected: dict[str, str]
) -> None:
    assert wandb_trial_env(environ, params) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1, 1.0, id="int"),
        pytest.param(-0.5, -0.5, id="float"),
        pytest.param(1e-300, 1e-300, id="tiny"),
    ],
)
def test_check_objective_accepts(value: object, expected: float) -> None:
    assert check_objective(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(None, "is None", id="none"),
        pytest.param(float("nan"), "is nan", id="nan"),
        pytest.param(float("-inf"), "is -inf", id="-inf"),
        pytest.param(True, "not a real number", id="bool"),
        pytest.param("1.0", "not a real number", id="string"),
        pytest.param([1.0], "not a real number", id="list"),
    ],
)
def test_check_objective_rejects(value: object, message: str) -> None:
    with pytest.raises(ReportingError, match=message.replace("(", r"\(")):
        check_objective(value)


def test_objective_from_mapping() -> None:
    assert objective_from_return({"val_loss": 2, "acc": 1}, "val_loss") == 2.0
    with pytest.raises(ReportingError, match="available keys: 'acc'"):
        objective_from_return({"acc": 1}, "val_loss")


@pytest.fixture
def fresh_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    metrics = tmp_path / "m" / "metrics"
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(metrics))
    monkeypatch.delenv("HYDRA_VERTEX_METRIC", raising=False)
    monkeypatch.setattr(reporting, "_state", {"hypertune": None, "path": None, "last_step": None})
    return metrics


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_report_steps_and_metric_resolution(
    fresh_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report(0.9)
    report(0.8)
    report(0.7, step=10)
    monkeypatch.setenv("HYDRA_VERTEX_METRIC", "val_loss")
    report(0.6)
    report(0.5, metric="other")
    entries = _read(fresh_state)
    assert [(e.get("training/hptuning/metric"), e["global_step"]) for e in entries[:3]] == [
        ("0.9", "0"),
        ("0.8", "1"),
        ("0.7", "10"),
    ]
    assert (entries[3]["val_loss"], entries[3]["global_step"]) == ("0.6", "11")
    assert (entries[4]["other"], entries[4]["global_step"]) == ("0.5", "12")


@pytest.mark.parametrize(
    ("value", "step"),
    [
        pytest.param(math.nan, None, id="nan"),
        pytest.param(math.inf, None, id="inf"),
        pytest.param(1.0, -1, id="negative-step"),
        pytest.param(1.0, 1.5, id="float-step"),
    ],
)
def test_report_rejects(fresh_state: Path, value: float, step: Any) -> None:
    with pytest.raises(ReportingError):
        report(value, step=step)
    assert not fresh_state.exists()


def test_local_multirun_skips_invalid_jobs_and_goes_on(tmp_path: Path) -> None:
    """Outside a trial (a local ``-m`` sweep) an invalid value is skipped, not fatal to the sweep."""
    proc, entries = run_app(
        tmp_path,
        "mode=nan,epochs",
        "epochs=2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        multirun=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hydra-vertex: the objective is nan" in proc.stderr
    # steps restart with each job
    assert [(e["val_loss"], e["global_step"]) for e in entries] == [
        ("1.0", "0"),
        ("0.5", "1"),
        ("0.25", "2"),
    ]


def test_through_the_installed_shim(tmp_path: Path) -> None:
    """The shim switches the callback on with the space's metric; no app edits needed."""
    shim = Path(sys.executable).parent / "hydra-vertex-shim"
    if not shim.exists():
        pytest.skip("hydra-vertex-shim is not installed in this environment")
    space = tmp_path / "space.yaml"
    space.write_text(
        "metric: val_loss\ndirection: minimize\nparams:\n  lr: tag(log, interval(1e-5, 1e-1))\n"
    )
    metrics = tmp_path / "metrics"
    env = {**_clean_env(), "CLOUD_ML_HP_METRIC_FILE": str(metrics), "CLOUD_ML_TRIAL_ID": "5"}
    proc = subprocess.run(
        [
            *(str(shim), "--search-space", str(space), "--"),
            *(sys.executable, str(APP), "mode=dict", "--lr=0.01"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [(e["val_loss"], e["global_step"], e["trial"]) for e in entries] == [("0.25", "0", "5")]


def test_numpy_scalars_and_dictconfig() -> None:
    from omegaconf import OmegaConf

    assert objective_from_return(OmegaConf.create({"val_loss": 0.5}), "val_loss") == 0.5
    np = pytest.importorskip("numpy")
    assert check_objective(np.float32(0.5)) == 0.5
    assert check_objective(np.array(2.0)) == 2.0
    with pytest.raises(ReportingError, match="not a real number"):
        check_objective(np.array([1.0, 2.0]))


def test_the_hugging_face_callback_reports_each_evaluation_in_a_trial(
    fresh_state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import TrainerControl, TrainerState

    from hydra_vertex.hf import ReportEvaluationCallback

    callback = ReportEvaluationCallback("eval_loss")
    monkeypatch.setenv("HYDRA_VERTEX_METRIC", "val_loss")
    monkeypatch.delenv("CLOUD_ML_TRIAL_ID", raising=False)
    callback.on_evaluate(None, TrainerState(global_step=10), TrainerControl(), {"eval_loss": 0.9})
    assert not fresh_state.exists()  # not a trial: nothing written
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "3")
    for step, loss in ((10, 0.9), (20, 0.7), (30, float("nan")), (40, 0.5)):
        callback.on_evaluate(None, TrainerState(global_step=step), TrainerControl(),
                             {"eval_loss": loss, "epoch": step / 10})
    callback.on_evaluate(None, TrainerState(global_step=50), TrainerControl(), {"loss": 0.1})
    entries = _read(fresh_state)
    assert [(e["val_loss"], e["global_step"]) for e in entries] == [
        ("0.9", "10"), ("0.7", "20"), ("0.5", "40"),
    ]
    assert "hydra-vertex: the reported value is nan" in capsys.readouterr().err
