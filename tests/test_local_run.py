"""`hydra-vertex run --local`: the whole flow on one machine, as a user runs it (slow: real
trials through the emulator, the template through kfp.local)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
FAILING = Path(__file__).parent / "apps" / "failing_app"
CLI = Path(sys.executable).with_name("hydra-vertex")

pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    from hydra_vertex.vertex import PROJECT_ENV

    env = {
        k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_") and k not in PROJECT_ENV
    }
    env["HYDRA_VERTEX_IMAGES"] = str(tmp_path / "images")
    env["HYDRA_VERTEX_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run(
        [str(CLI), *args], cwd=work, env=_env(tmp_path), capture_output=True, text=True,
        timeout=600,
    )


def _emulator_job(state: Path, name: str) -> Any:
    """Read a finished job back through the SDK from a restarted emulator on the run's state."""
    from google.cloud import aiplatform

    from hydra_vertex.emulator import connect, start

    with start(state):
        connect(state, project="local-project", location="us-central1")
        return aiplatform.CustomJob.get(name).gca_resource


def _digits_job(tmp_path: Path, max_trials: int) -> Path:
    """The digits job file with a smaller budget, written to ``tmp_path``."""
    data = yaml.safe_load((DIGITS / "job.yaml").read_text())
    data["app"]["source"] = str(DIGITS)
    data["search_space"] = str(DIGITS / "search_space.yaml")
    data["tuning"].update(max_trials=max_trials, parallel_trials=2)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    return job


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("demo")
    # as `make demo` runs it: no --local (no Vertex AI project is configured here)
    done = _run(tmp, "run", str(DIGITS / "job.yaml"), "--output", "SUMMARY.json")
    return tmp, done


def test_demo_writes_the_summary(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, done = demo
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp / "work" / "SUMMARY.json").read_text())
    assert summary["status"] == "succeeded" and summary["error"] is None
    trials = summary["trials"]
    assert [t["id"] for t in trials] == [str(i) for i in range(1, 13)]
    for t in trials:
        assert set(t) >= {"id", "state", "parameters", "value"}
        assert t["state"] == "SUCCEEDED" and isinstance(t["value"], float)
        assert isinstance(t["parameters"]["trainer.max_iter"], int)  # typed by the space
        assert t["parameters"]["model"] in ("sgd", "svm")
    best = min(trials, key=lambda t: (t["value"], int(t["id"])))
    assert summary["best_trial_id"] == best["id"]
    assert summary["best_value"] == best["value"]
    assert summary["best_parameters"] == best["parameters"]
    overrides = summary["best_overrides"]
    assert sorted(overrides) == sorted(f"{k}={v}" for k, v in best["parameters"].items())
    # Progress and the end-of-run table went to stdout (not a terminal: one line per trial).
    assert done.stdout.count(" SUCCEEDED ") >= 12
    assert f"best trial {best['id']}:" in done.stdout
    # The HTML report went next to the summary (its content is tested in tests/browser).
    report = Path(summary["report"])
    assert report == (tmp / "work" / "report.html").resolve() and report.stat().st_size > 0


def test_demo_retrains_with_exactly_the_best_overrides(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    tmp, done = demo
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp / "work" / "SUMMARY.json").read_text())
    model_dir = Path(summary["model_dir"])
    assert model_dir.is_absolute() and (model_dir / "model.pkl").is_file()
    assert summary["model_uri"].startswith("gs://hydra-vertex-local/digits/")
    retrain_overrides = yaml.safe_load((DIGITS / "job.yaml").read_text())["retrain"]["overrides"]

    # The retrain job's command, as the emulator ran it: the app (through the shim, which makes it
    # one Hydra run), the winner's overrides, the final-run overrides. Nothing else.
    job = _emulator_job(tmp / "work" / ".hydra-vertex" / "emulator", summary["retrain_job"])
    command = list(job.job_spec.worker_pool_specs[0].container_spec.command)
    assert command == [
        "hydra-vertex-shim", "--retrain", "--", "python", "train.py", *summary["best_overrides"],
        *retrain_overrides,
    ]

    # And the config the app saved next to the model is what Hydra composes from them.
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(DIGITS / "conf"), version_base=None):
        expected = compose("config", overrides=[*summary["best_overrides"], *retrain_overrides])
    saved = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert saved == OmegaConf.to_container(expected)

    from sklearn.datasets import load_digits

    with open(model_dir / "model.pkl", "rb") as f:
        model = pickle.load(f)
    x, y = load_digits(return_X_y=True)
    assert (model.predict(x[:200]) == y[:200]).mean() > 0.9
    # the retrain's own val_error (the app saved it next to the model) is the summary's
    saved_metrics = json.loads((model_dir / "metrics.json").read_text())
    assert summary["retrain_value"] == pytest.approx(saved_metrics["val_error"])
    assert f"retrain: val_error={summary['retrain_value']:.6g}" in done.stdout


def test_the_retrains_log_after_the_demo(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """`hydra-vertex logs` finds the emulator through its state directory (no variables)."""
    from hydra_vertex.emulator import start

    tmp, done = demo
    assert done.returncode == 0, done.stderr
    with start(tmp / "work" / ".hydra-vertex" / "emulator"):
        logs = _run(tmp, "logs", "digits-retrain")
        assert logs.returncode == 0, logs.stderr
        assert "saved model to" in logs.stdout
        opened = _run(tmp, "open")
        assert opened.returncode == 0 and opened.stdout.startswith("http://127.0.0.1:")


def test_rerun_reuses_the_image(tmp_path: Path) -> None:
    job = _digits_job(tmp_path, max_trials=2)
    first = _run(tmp_path, "run", "--local", str(job), "-o", "s1.json", "--quiet")
    second = _run(tmp_path, "run", "--local", str(job), "-o", "s2.json", "--quiet")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == "" and second.stdout == ""  # --quiet
    s1 = json.loads((tmp_path / "work" / "s1.json").read_text())
    s2 = json.loads((tmp_path / "work" / "s2.json").read_text())
    assert s1["image_uri"] == s2["image_uri"]
    assert s1["tuning_job"] != s2["tuning_job"]
    assert "built before the pipeline started" in Path(s2["log"]).read_text()
    assert len(list((tmp_path / "images").iterdir())) == 1


def test_every_trial_failing_is_a_clear_error_and_the_summary_keeps_the_trials(
    tmp_path: Path,
) -> None:
    done = _run(tmp_path, "run", "--local", str(FAILING / "job.yaml"), "-o", "SUMMARY.json")
    assert done.returncode == 1
    assert "no trial succeeded (3 trials: 3 INFEASIBLE)" in done.stderr
    assert "diverged at lr=" in done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads((tmp_path / "work" / "SUMMARY.json").read_text())
    assert summary["status"] == "failed" and "no trial succeeded" in summary["error"]
    assert [t["state"] for t in summary["trials"]] == ["INFEASIBLE"] * 3
    assert all("diverged" in t["infeasible_reason"] for t in summary["trials"])
    assert summary["model_dir"] is None and summary["best_overrides"] == []


def test_the_python_api_runs_the_same_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hydra_vertex

    for k, v in _env(tmp_path).items():
        if k.startswith("HYDRA_VERTEX_"):
            monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    job = _digits_job(tmp_path, max_trials=3)
    summary = hydra_vertex.run(job, output=tmp_path / "S.json")
    assert summary.status == "succeeded", summary.error
    assert len(summary.trials) == 3
    assert json.loads((tmp_path / "S.json").read_text())["best_overrides"] == summary.best_overrides
    assert Path(summary.model_dir or "").joinpath("model.pkl").is_file()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"tuning": {"max_trials": 0}}, "'tuning.max_trials' must be an integer >= 1"),
        ({"app": {"source": "nowhere", "command": ["python", "train.py"]}}, "'app.source'"),
        ({"search_space": "missing.yaml"}, "'search_space' must be an existing file"),
        ({"vertex": {"staging_bucket": "/tmp/x"}}, "'vertex.staging_bucket' must be a gs:// URI"),
    ],
)
def test_bad_job_files_name_the_field(tmp_path: Path, edit: dict[str, Any], message: str) -> None:
    data = yaml.safe_load((DIGITS / "job.yaml").read_text())
    data.update(edit)
    for name in ("train.py", "search_space.yaml"):
        (tmp_path / name).write_text((DIGITS / name).read_text())
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    done = _run(tmp_path, "run", "--local", str(job))
    assert done.returncode == 1
    assert message in done.stderr and str(job) in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_search_space_names_the_parameter(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "metric: val_error\ndirection: minimize\nparams:\n  model.C: tag(log, interval(0, 1))\n"
    )
    data = yaml.safe_load((DIGITS / "job.yaml").read_text())
    data.update(search_space="s.yaml")
    data["app"]["source"] = str(DIGITS)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    done = _run(tmp_path, "run", "--local", str(job))
    assert done.returncode == 1
    assert "model.C" in done.stderr and "log" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_without_local_with_a_vertex_project_configured_says_what_to_do(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([str(CLI), "run", str(DIGITS / "job.yaml")], cwd=work,
                          env={**_env(tmp_path), "GOOGLE_CLOUD_PROJECT": "my-project"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "GOOGLE_CLOUD_PROJECT=my-project" in done.stderr
    assert "--local" in done.stderr and "submit" in done.stderr
    assert not (work / ".hydra-vertex").exists()  # nothing ran


def test_the_compiled_template_runs_under_kfp_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user does by hand: load the JSON, run it with kfp.local against the emulator."""
    from kfp import local
    from kfp.components import load_component_from_file

    from hydra_vertex.emulator import start

    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    monkeypatch.setenv("HYDRA_VERTEX_CACHE_DIR", str(tmp_path / "cache"))
    with start(tmp_path / "state", seed=3) as emulator:
        monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", emulator.endpoint)
        monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", emulator.token)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "r"))
        pipeline = load_component_from_file(str(ROOT / "pipelines" / "tune_and_retrain.json"))
        task = pipeline(
            app_name="digits",
            app_source=str(DIGITS),
            app_command=["python", "train.py"],
            search_space=yaml.safe_load((DIGITS / "search_space.yaml").read_text()),
            project="local-project",
            staging_bucket="gs://bucket/runs",
            max_trial_count=3,
            parallel_trial_count=2,
            retrain_overrides=["val_fraction=0.1"],
            trial_machine={"accelerator_type": "NVIDIA_L4", "scheduling_strategy": "SPOT"},
            retrain_machine={"boot_disk_size_gb": 200},  # whole: no GPU, no SPOT
            tuning_options={"measurement_selection": "best"},
        )
        from hydra_vertex.steps.common import job_client

        client = job_client("us-central1")
        tuning = client.get_hyperparameter_tuning_job(name=task.outputs["tuning_job"])
        retrain = client.get_custom_job(name=task.outputs["retrain_job"])
    out = task.outputs
    # The dict parameters went through the compiled template into the jobs.
    trial_pool = tuning.trial_job_spec.worker_pool_specs[0]
    assert trial_pool.machine_spec.accelerator_type.name == "NVIDIA_L4"
    assert tuning.trial_job_spec.scheduling.strategy.name == "SPOT"
    assert tuning.study_spec.measurement_selection_type.name == "BEST_MEASUREMENT"
    retrain_pool = retrain.job_spec.worker_pool_specs[0]
    assert retrain_pool.machine_spec.accelerator_type.name == "ACCELERATOR_TYPE_UNSPECIFIED"
    assert retrain_pool.disk_spec.boot_disk_size_gb == 200
    assert retrain_pool.machine_spec.machine_type == "n1-standard-4"
    assert retrain.job_spec.scheduling.strategy.name == "STRATEGY_UNSPECIFIED"
    assert isinstance(out["best_overrides"], list) and out["best_overrides"]
    assert all(isinstance(o, str) and "=" in o for o in out["best_overrides"])
    assert isinstance(out["best_value"], float) and 0.0 <= out["best_value"] <= 1.0
    assert out["best_trial_id"] in ("1", "2", "3")
    assert out["model_dir"].startswith("gs://bucket/runs/digits/")
    assert out["image_uri"].startswith("hydra-vertex.local/digits@sha256:")
    model = tmp_path / "state" / "storage" / out["model_dir"].removeprefix("gs://")
    assert (model / "model.pkl").is_file()
