"""W&B settings of a job's process (hydra_vertex.wandb_runs) and the offline run reader.

The reader is checked on a real offline run written by the real ``wandb`` client (no mocks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from hydra_vertex import wandb_runs
from hydra_vertex.wandb_offline import find_runs, read_records, read_run


def _no_key(tmp_path: Path, **env: str) -> dict[str, str]:
    return {"NETRC": str(tmp_path / "no-netrc"), **env}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, {"WANDB_MODE": "offline"}, id="no-key-offline"),
        pytest.param({"WANDB_API_KEY": "k" * 40}, {}, id="key-online"),
        pytest.param({"WANDB_MODE": "online"}, {}, id="mode-kept"),
        pytest.param(
            {"WANDB_DISABLED": "true", "WANDB_MODE": "offline", "WANDB_LOG_MODEL": "end"},
            {"WANDB_MODE": "disabled", "WANDB_LOG_MODEL": "false", "WANDB_WATCH": "false"},
            id="disabled-wins",
        ),
        pytest.param({"WANDB_DISABLED": "false"}, {"WANDB_MODE": "offline"}, id="disabled-false"),
    ],
)
def test_run_env_mode(tmp_path: Path, environ: dict[str, str], expected: dict[str, str]) -> None:
    assert wandb_runs.run_env(_no_key(tmp_path, **environ)) == expected


def test_netrc_entry_counts_as_a_key(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    assert wandb_runs.has_api_key({"NETRC": str(netrc)})
    assert wandb_runs.run_env({"NETRC": str(netrc)}) == {}
    other = {"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.com"}
    assert not wandb_runs.has_api_key(other)


def test_runs_go_next_to_the_model_dir(tmp_path: Path) -> None:
    model = tmp_path / "out" / "7" / "model"
    env = _no_key(tmp_path, AIP_MODEL_DIR=f"{model}/")
    assert wandb_runs.run_env(env)["WANDB_DIR"] == str(tmp_path / "out" / "7")
    assert "WANDB_DIR" not in wandb_runs.run_env({**env, "WANDB_DIR": "/mine"})
    assert wandb_runs.wandb_dir({}) is None
    # gs:// only through the /gcs mount that Vertex provides.
    gcs = wandb_runs.wandb_dir({"AIP_MODEL_DIR": "gs://b/run/3/model/"})
    assert gcs == ("/gcs/b/run/3" if os.path.isdir("/gcs") else None)


def test_apply_sets_and_creates_the_directory(tmp_path: Path) -> None:
    env = _no_key(tmp_path, AIP_MODEL_DIR=str(tmp_path / "job" / "model"))
    changes = wandb_runs.apply(env)
    assert changes == {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "job")}
    assert env["WANDB_DIR"] == str(tmp_path / "job") and (tmp_path / "job").is_dir()
    assert wandb_runs.apply(env) == {}  # idempotent


def test_trial_config_file(tmp_path: Path) -> None:
    params = {"optimizer.lr": 0.01, "batch": 16, "model": "cnn", "layers": [1, 2]}
    env = wandb_runs.trial_config_file(tmp_path, params, {"CLOUD_ML_TRIAL_ID": "5"})
    path = Path(env[wandb_runs.PARAMS_ENV])
    assert path == (tmp_path / wandb_runs.TRIAL_CONFIG_NAME).resolve()
    assert yaml.safe_load(path.read_text()) == {
        "wandb_version": 1,
        "optimizer.lr": {"value": 0.01},
        "batch": {"value": 16},
        "model": {"value": "cnn"},
        "layers": {"value": [1, 2]},
        "hpt_trial_id": {"value": "5"},
    }


_WRITER = textwrap.dedent(
    """
    import wandb
    run = wandb.init(project="p", name="n", group="g", job_type="t", tags=["a", "b"],
                     config={"x": 1, "nested": {"y": 2}})
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    run.summary["best"] = 0.25
    art = wandb.Artifact("thing", type="model", metadata={"k": 1})
    with art.new_file("hello.txt", mode="w") as f:
        f.write("hi")
    run.log_artifact(art)
    run.finish()
    """
)


def test_reads_a_real_offline_run_back(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("WANDB_")
    } | _no_key(
        tmp_path,
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path),
        WANDB_DATA_DIR=str(tmp_path / "data"),
        WANDB_CACHE_DIR=str(tmp_path / "cache"),
        WANDB_CONFIG_DIR=str(tmp_path / "config"),
        WANDB_SWEEP_PARAM_PATH=str(tmp_path / "params.yaml"),
    )
    wandb_runs.trial_config_file(tmp_path, {"optimizer.lr": 0.5}, {})
    (tmp_path / wandb_runs.TRIAL_CONFIG_NAME).rename(tmp_path / "params.yaml")
    subprocess.run([sys.executable, "-c", _WRITER], env=env, check=True, timeout=120,
                   capture_output=True)
    (run_dir,) = find_runs(tmp_path)
    run = read_run(run_dir)
    assert (run.name, run.group, run.job_type, run.project) == ("n", "g", "t", "p")
    assert run.tags == ["a", "b"]
    assert run.config["x"] == 1 and run.config["nested"] == {"y": 2}
    assert run.config["optimizer.lr"] == 0.5  # from WANDB_SWEEP_PARAM_PATH
    assert run.summary["loss"] == pytest.approx(1 / 3) and run.summary["best"] == 0.25
    assert [row["loss"] for row in run.history] == pytest.approx([1.0, 0.5, 1 / 3])
    assert run.exit_code == 0
    art = run.artifact("thing:v0")
    assert art is run.artifact("thing:latest") is run.artifact("thing")
    assert art.metadata == {"k": 1}
    assert (art.download(tmp_path / "dl") / "hello.txt").read_text() == "hi"
    with pytest.raises(KeyError, match="no artifact 'other'"):
        run.artifact("other")
    with pytest.raises(KeyError, match="no version or alias 'v3'"):
        run.artifact("thing:v3")


def test_not_a_run_file(tmp_path: Path) -> None:
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"not a wandb file at all")
    with pytest.raises(ValueError, match="not a W&B run file"):
        list(read_records(bad))
    with pytest.raises(FileNotFoundError, match="no run-"):
        read_run(tmp_path / "missing")
