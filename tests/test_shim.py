"""End to end: the installed ``hydra-vertex-shim`` starting a real Hydra app (tests/apps/shim_app)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

APP_DIR = Path(__file__).parent / "apps" / "shim_app"
BIN = Path(sys.executable).parent

SPACE = """\
metric: val_loss
direction: minimize
params:
  lr: tag(log, interval(1e-5, 1e-1))
  batch_size: choice(32, 64, 128, 256)
  name: "choice('a, b=c [d]', plain, '${oc.env:HOME}')"
  model: choice(mlp, cnn)
  optimizer.momentum: interval(0.0, 1.0)
  +extra.depth: int(interval(0, 8))
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A copy of the app with s.yaml next to it, as a trial container's working directory."""
    shutil.copytree(APP_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "s.yaml").write_text(SPACE, encoding="utf-8")
    return tmp_path


def run(
    work: Path, args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HYDRA_VERTEX_CACHE_DIR": str(work / "cache"),
        "SHIM_APP_OUT": str(work / "out.json"),
        "CLOUD_ML_HP_METRIC_FILE": str(work / "metrics"),
        **(env or {}),
    }
    for k in ("CLOUD_ML_TRIAL_ID", "CLOUD_ML_JOB_ID"):
        if env is None or k not in env:
            full_env.pop(k, None)
    return subprocess.run(
        ["hydra-vertex-shim", *args], cwd=work, env=full_env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def composed(work: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((work / "out.json").read_text(encoding="utf-8"))
    return data


SHIM = ["--search-space", "s.yaml", "--", "python", "app.py"]


def test_acceptance(work: Path) -> None:
    proc = run(work, [*SHIM, "--lr=0.01", "--batch_size=256.0", "--name=a, b=c [d]"])
    assert proc.returncode == 0, proc.stderr
    cfg = composed(work)
    assert cfg["lr"] == 0.01 and type(cfg["lr"]) is float
    assert cfg["batch_size"] == 256 and type(cfg["batch_size"]) is int
    assert cfg["name"] == "a, b=c [d]"
    # The shim switched on the reporting callback: the app's return value reached hypertune.
    assert "val_loss" in (work / "metrics").read_text(encoding="utf-8")


def test_space_form_negative_and_literal_interpolation(work: Path) -> None:
    (work / "s.yaml").write_text(
        SPACE.replace("interval(0.0, 1.0)", "interval(-1.0, 1.0)"), encoding="utf-8"
    )
    proc = run(
        work,
        [*SHIM, "--optimizer.momentum", "-0.5", "--lr", "1e-5", "--name", "${oc.env:HOME}"],
    )
    assert proc.returncode == 0, proc.stderr
    cfg = composed(work)
    assert cfg["optimizer"]["momentum"] == -0.5
    assert cfg["lr"] == 1e-5
    assert cfg["name"] == "${oc.env:HOME}"  # literal, not interpolated


def test_exec_same_process_and_exit_code(work: Path) -> None:
    proc = subprocess.Popen(
        ["hydra-vertex-shim", *SHIM],
        cwd=work,
        env={
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "HYDRA_VERTEX_CACHE_DIR": str(work / "cache"),
            "SHIM_APP_OUT": str(work / "out.json"),
            "SHIM_APP_EXIT": "3",
            "CLOUD_ML_HP_METRIC_FILE": str(work / "metrics"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert composed(work)["_pid"] == proc.pid  # exec: the app *is* the shim's process


def test_signal_killed_app_is_the_shims_death(work: Path) -> None:
    proc = run(work, SHIM, env={"SHIM_APP_EXIT": "KILL"})
    assert proc.returncode == -signal.SIGKILL


def test_key_missing_from_config_fails_before_training(work: Path) -> None:
    (work / "s.yaml").write_text(SPACE + "  momentum: interval(0.0, 1.0)\n", encoding="utf-8")
    proc = run(work, [*SHIM, "--momentum=0.5"])
    assert proc.returncode == 1
    assert "Could not override 'momentum'" in proc.stderr
    assert "+momentum=" in proc.stderr  # Hydra tells how to add it
    assert not (work / "out.json").exists()  # the task function never ran


def test_new_key_is_added_with_plus(work: Path) -> None:
    proc = run(work, [*SHIM, "--extra.depth=3.0"])
    assert proc.returncode == 0, proc.stderr
    assert composed(work)["extra"] == {"depth": 3}


def test_config_group_selection(work: Path) -> None:
    proc = run(work, [*SHIM, "--model", "cnn"])
    assert proc.returncode == 0, proc.stderr
    assert composed(work)["model"] == {"kind": "cnn", "width": 32, "kernel": 3}


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(["--foo=1"], ["'--foo'", "'lr'", "'batch_size'"], id="undeclared"),
        pytest.param(["--lr=0.01", "--lr=0.02"], ["'lr'", "more than once"], id="duplicate"),
        pytest.param(["--batch_size=64.5"], ["'batch_size'", "64.5"], id="int-fraction"),
        pytest.param(["--model=rnn"], ["'rnn'", "['mlp', 'cnn']"], id="bad-category"),
        pytest.param(
            ["--extra.depth=" + "7" * 4300],
            ["'extra.depth'", "[0, 8]", "4300 characters"],
            id="int-4300-digits",
        ),
    ],
)
def test_trial_errors_are_one_line_exit_2(work: Path, args: list[str], needles: list[str]) -> None:
    proc = run(work, [*SHIM, *args])
    assert proc.returncode == 2
    assert proc.stderr.startswith("hydra-vertex-shim: error: ")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr
    assert not (work / "out.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        pytest.param(
            ["--", "python", "app.py"], 2, "--search-space FILE (or --search-space-json JSON, or --retrain) is required", id="no-space"
        ),
        pytest.param(["--search-space", "s.yaml"], 2, "missing '--'", id="no-dashdash"),
        pytest.param(["--search-space", "s.yaml", "--"], 2, "no app command", id="no-command"),
        pytest.param(["--search-space", "nope.yaml", "--", "python"], 2, "nope.yaml", id="no-file"),
        pytest.param(
            ["--search-space=s.yaml", "--", "no-such-program-xyz"], 127, "not found", id="not-found"
        ),
    ],
)
def test_usage_errors(work: Path, args: list[str], code: int, needle: str) -> None:
    proc = run(work, args)
    assert proc.returncode == code
    assert proc.stderr.startswith("hydra-vertex-shim: error: ")
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_per_trial_output_dirs(work: Path) -> None:
    dirs = []
    for trial in ("1", "2"):
        env = {"CLOUD_ML_JOB_ID": "4242", "CLOUD_ML_TRIAL_ID": trial}
        proc = run(work, [*SHIM, "--lr=0.001"], env=env)
        assert proc.returncode == 0, proc.stderr
        dirs.append(composed(work)["_run_dir"])
    assert dirs == ["outputs/hpt/4242/trial-1", "outputs/hpt/4242/trial-2"]
    for d in dirs:
        assert (work / d / ".hydra" / "overrides.yaml").is_file()
    # The user's own hydra.run.dir wins.
    proc = run(work, [*SHIM, "hydra.run.dir=mine", "--lr=0.001"], env={"CLOUD_ML_TRIAL_ID": "9"})
    assert proc.returncode == 0, proc.stderr
    assert composed(work)["_run_dir"] == "mine"


def test_injection_stays_one_value(work: Path) -> None:
    """A value cannot become a second override or a Hydra flag (the categories are hostile)."""
    evil = ["x hydra.run.dir=/var/evil", "--cfg", "-m", "--help", "a,b"]
    cats = ", ".join("'" + e + "'" for e in evil)
    (work / "s.yaml").write_text(
        f'metric: m\ndirection: minimize\nparams:\n  name: "choice({cats})"\n', encoding="utf-8"
    )
    for value in evil:
        proc = run(work, [*SHIM, "--name", value], env={"CLOUD_ML_TRIAL_ID": "1"})
        assert proc.returncode == 0, (value, proc.stderr)
        cfg = composed(work)
        assert cfg["name"] == value
        assert cfg["_run_dir"] == "outputs/hpt/local/trial-1"


def test_cached_path_imports_nothing_heavy(work: Path) -> None:
    code = (
        "import sys\n"
        "from hydra_vertex.shim import build_command\n"
        "cmd = build_command('s.yaml', ['python', 'app.py', '--lr=0.01', '--name=a, b=c [d]'])\n"
        "heavy = sorted(set(sys.modules) & {'hydra', 'omegaconf', 'yaml', 'antlr4', 'kfp', "
        "'optuna', 'torch', 'grpc', 'google.protobuf', 'google.cloud.aiplatform'})\n"
        "print(heavy)\n"
    )
    env = {**os.environ, "HYDRA_VERTEX_CACHE_DIR": str(work / "cache")}
    first = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, check=True
    )
    assert "hydra" in first.stdout  # the first start parses with Hydra and fills the cache
    second = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, check=True
    )
    assert second.stdout.strip() == "[]"


def test_inline_json_space_as_the_pipeline_passes_it(work: Path) -> None:
    from hydra_vertex.search_space import load

    inline = json.dumps(load(work / "s.yaml").to_dict())
    proc = run(work, ["--search-space-json", inline, "--", "python", "app.py", "--lr=0.01",
                      "--batch_size=256.0", "--name=plain"])
    assert proc.returncode == 0, proc.stderr
    cfg = composed(work)
    assert cfg["batch_size"] == 256 and type(cfg["batch_size"]) is int
    assert "val_loss" in (work / "metrics").read_text(encoding="utf-8")

    bad = run(work, ["--search-space-json", "{not json", "--", "python", "app.py"])
    assert bad.returncode == 2
    assert "--search-space-json: not a compiled search space" in bad.stderr
    assert "Traceback" not in bad.stderr

    nul = inline.replace('"plain"', '"pl\\u0000ain"')  # a NUL (JSON-escaped) in a category
    assert nul != inline
    bad = run(work, ["--search-space-json", nul, "--", "python", "app.py", "--name=a"])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "NUL character" in bad.stderr and "Traceback" not in bad.stderr

    lone = inline.replace('"plain"', '"pl\\ud800ain"')  # a lone surrogate (JSON-escaped)
    assert lone != inline
    bad = run(work, ["--search-space-json", lone, "--", "python", "app.py", "--name=a"])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "lone surrogate" in bad.stderr and "Traceback" not in bad.stderr


def _metric_entries(work: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (work / "metrics").read_text().splitlines() if line.strip()]


def test_a_config_that_selects_multirun_still_runs_once(work: Path) -> None:
    """lightning-hydra-template's hparams_search configs set hydra.mode: MULTIRUN; a trial is one
    run (one value reported), and the trial log says why in one line."""
    config = (work / "conf" / "config.yaml").read_text()
    (work / "conf" / "sweeping.yaml").write_text(
        config + "hydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n      batch_size: 32,64\n"
    )
    multi = ["--search-space", "s.yaml", "--", "python", "app.py", "--config-name", "sweeping"]
    proc = run(work, [*multi, "--lr=0.01"], env={"CLOUD_ML_TRIAL_ID": "3"})
    assert proc.returncode == 0, proc.stderr
    assert len(_metric_entries(work)) == 1
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("hydra-vertex: warning:")]
    assert warnings == [
        "hydra-vertex: warning: the app's config selects hydra.mode=MULTIRUN (as an hparams_search "
        "config does); a trial is one run, so it runs with hydra.mode=RUN and the tuning job does the sweeping"
    ]
    assert composed(work)["_run_dir"] == "outputs/hpt/local/trial-3"
    # A config in RUN mode gets no warning.
    proc = run(work, [*SHIM, "--lr=0.01"], env={"CLOUD_ML_TRIAL_ID": "4"})
    assert proc.returncode == 0 and "warning" not in proc.stderr


@pytest.mark.parametrize(
    "app",
    [
        pytest.param(["python", "app.py", "-m"], id="dash-m"),
        pytest.param(["python", "-u", "app.py", "--multirun"], id="multirun-after-python-flags"),
        pytest.param(["python", "app.py", "hydra.mode=MULTIRUN"], id="mode-override"),
    ],
)
def test_an_app_command_that_asks_for_a_sweep_is_refused(work: Path, app: list[str]) -> None:
    proc = run(work, ["--search-space", "s.yaml", "--", *app, "--lr=0.01"])
    assert proc.returncode == 2
    assert proc.stderr.startswith("hydra-vertex-shim: error: the app command has ")
    assert "remove it from app.command" in proc.stderr and proc.stderr.count("\n") == 1


def test_python_dash_m_is_not_hydras(work: Path) -> None:
    (work / "pkg").mkdir()
    (work / "pkg" / "__init__.py").write_text("")
    (work / "pkg" / "train.py").write_text((work / "app.py").read_text().replace('config_path="conf"', 'config_path="../conf"'))
    proc = run(work, ["--search-space", "s.yaml", "--", "python", "-m", "pkg.train", "--lr=0.01"])
    assert proc.returncode == 0, proc.stderr


def test_the_emulators_output_dir_and_the_retrain(work: Path) -> None:
    out = work / "run" / "outputs"
    proc = run(work, [*SHIM, "--lr=0.01"], env={"CLOUD_ML_TRIAL_ID": "1", "HYDRA_VERTEX_OUTPUT_DIR": str(out)})
    assert proc.returncode == 0, proc.stderr
    assert composed(work)["_run_dir"] == str(out) and (out / ".hydra" / "config.yaml").is_file()
    # The retrain: no trial arguments to convert, one run, the output directory when given.
    retrain = out.parent / "retrain"
    proc = run(work, ["--retrain", "--", "python", "app.py", "lr=0.5"], env={"HYDRA_VERTEX_OUTPUT_DIR": str(retrain)})
    assert proc.returncode == 0, proc.stderr
    cfg = composed(work)
    assert cfg["lr"] == 0.5 and cfg["_run_dir"] == str(retrain)
    assert len(_metric_entries(work)) == 1  # the trial's: the retrain reports nothing
    proc = run(work, ["--retrain", "--", "python", "app.py", "-m", "lr=0.5"])
    assert proc.returncode == 2 and "the app command has '-m'" in proc.stderr


def test_the_retrain_records_its_value_when_told_the_metric(work: Path) -> None:
    """The retrain step sets HYDRA_VERTEX_METRIC: the task function's value goes to the metric
    file; a value that cannot be reported is a warning, and the retrain still succeeds."""
    proc = run(work, ["--retrain", "--", "python", "app.py"], env={"HYDRA_VERTEX_METRIC": "loss"})
    assert proc.returncode == 0, proc.stderr
    [entry] = _metric_entries(work)
    assert float(entry["loss"]) == 0.5
    proc = run(work, ["--retrain", "--", "python", "app.py"], env={"HYDRA_VERTEX_METRIC": "loss", "SHIM_APP_RETURN": "nan"})
    assert proc.returncode == 0, proc.stderr
    assert "hydra-vertex: warning: the objective is nan" in proc.stderr
