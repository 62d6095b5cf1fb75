"""The Hugging Face + W&B example: tuned on the emulator, its trials and retrain read back from W&B.

Real parts only: the example app composed by Hydra, the Hugging Face Trainer, W&B offline runs
(read back from their ``.wandb`` files), `hydra-vertex run --local` with the emulator. Nothing is
downloaded (``HF_HUB_OFFLINE=1``; the model is built from a config, the tokenizer from the shipped
data) and no W&B account is used (no API key: runs are offline).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_vertex import jobfile
from hydra_vertex import search_space as ss

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "text_classification"
CLI = Path(sys.executable).with_name("hydra-vertex")
POSITIVE = "honestly the hotel felt wonderful , worth every penny"
NEGATIVE = "the app was useless , a waste of money"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No W&B key or settings from the caller; W&B's own files under ``tmp_path``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HYDRA_VERTEX_", "WANDB_", "CLOUD_ML_", "AIP_"))
    }
    env.update(
        HYDRA_VERTEX_IMAGES=str(tmp_path / "images"),
        HYDRA_VERTEX_CACHE_DIR=str(tmp_path / "cache"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        NETRC=str(tmp_path / "no-netrc"),
        WANDB_DATA_DIR=str(tmp_path / "wandb-data"),
        WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
        WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
    )
    env.update(extra)
    return env


def _run_local(tmp_path: Path, job: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    done = subprocess.run(
        [str(CLI), "run", "--local", str(job), "--output", "SUMMARY.json"],
        cwd=work, env=_env(tmp_path, **env), capture_output=True, text=True, timeout=600,
    )
    summary_file = work / "SUMMARY.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    return done, summary


# -- the example's files --------------------------------------------------------------------------


def test_every_tuned_parameter_exists_in_the_config() -> None:
    job = jobfile.load(EXAMPLE / "job.yaml")
    space = ss.load(job.search_space)
    assert space.metric == "eval_loss" and space.direction == "minimize"
    assert {p.key for p in space.params} == {
        "optimizer.lr", "optimizer.weight_decay", "trainer.batch_size", "trainer.warmup_ratio",
        "model.hidden_size",
    }
    assert space.param("optimizer.lr").scale == "log"
    with initialize_config_dir(str(EXAMPLE / "conf"), version_base=None):
        cfg = compose("config")
    for p in space.params:
        assert OmegaConf.select(cfg, p.key) is not None, p.key
    assert cfg.trainer.report_to == "wandb"
    assert job.wandb["project"] and job.wandb["tags"] == ["example"]


def test_shipped_data_is_what_make_data_writes(tmp_path: Path) -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import make_data
    finally:
        sys.path.remove(str(EXAMPLE))
    rows = (EXAMPLE / "data" / "reviews.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert rows == [f"{label}\t{text}" for label, text in make_data.make()]
    assert {r.split("\t")[0] for r in rows} == {"0", "1"}


# -- tuning and retrain on the emulator, read back from W&B ---------------------------------------


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, str]:
    """`hydra-vertex run --local examples/text_classification/job.yaml` (4 trials, 2 at a time)."""
    tmp = tmp_path_factory.mktemp("text-classification")
    done, summary = _run_local(tmp, EXAMPLE / "job.yaml")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp, summary, done.stdout


def _runs(root: Path) -> list[Any]:
    from hydra_vertex.wandb_offline import find_runs, read_run

    return [read_run(d) for d in find_runs(root)]


@pytest.mark.slow
def test_trials_are_one_wandb_group_with_the_emulators_values(tuned: tuple[Path, Any, str]) -> None:
    tmp, summary, _ = tuned
    job_id = summary["tuning_job"].rsplit("/", 1)[-1]
    settings = yaml.safe_load((EXAMPLE / "job.yaml").read_text())["wandb"]
    trials = {f"trial-{t['id']}": t for t in summary["trials"]}
    assert len(trials) == 4 and all(t["state"] == "SUCCEEDED" for t in trials.values())
    runs = {r.name: r for r in _runs(tmp / "work") if r.job_type == "hpt-trial"}
    assert set(runs) == set(trials)
    for name, trial in trials.items():
        run = runs[name]
        assert run.group == job_id
        assert run.project == settings["project"]
        assert run.exit_code == 0
        # Tags: the job file's, then one per parameter.
        assert run.tags[: len(settings["tags"])] == settings["tags"]
        assert set(run.tags) >= {f"{k}={v}" for k, v in trial["parameters"].items()}
        # The trial's parameters in the run config, typed as the emulator gave them.
        for key, value in trial["parameters"].items():
            assert run.config[key] == value, key
            assert type(run.config[key]) is type(value), key
        assert run.config["hpt_trial_id"] == trial["id"] and run.config["hpt_job_id"] == job_id
        # The Trainer really used them.
        assert run.config["learning_rate"] == trial["parameters"]["optimizer.lr"]
        assert run.config["hidden_size"] == trial["parameters"]["model.hidden_size"]
        # The value the emulator recorded is the one the trial logged to W&B.
        assert run.summary["eval/loss"] == trial["value"]
        assert "eval/accuracy" in run.summary and "train/loss" in run.summary
        assert run.artifacts == []  # trials upload no model
        # The run sits next to the trial's model directory (WANDB_DIR).
        assert run.path.parent.parent.name == trial["id"]


@pytest.mark.slow
def test_retrain_run_holds_the_model_and_it_loads_back(
    tuned: tuple[Path, Any, str], tmp_path: Path
) -> None:
    tmp, summary, _ = tuned
    job_id = summary["tuning_job"].rsplit("/", 1)[-1]
    (run,) = [r for r in _runs(tmp / "work") if r.job_type == "retrain"]
    assert run.name == "text-classification-retrain"
    assert run.group == job_id
    assert run.tags == ["example"]
    assert run.exit_code == 0
    # The retrain ran the winner's parameters with the final-run override.
    best = summary["best_parameters"]
    assert run.config["learning_rate"] == best["optimizer.lr"]
    assert run.config["num_train_epochs"] == 4
    # Its W&B directory is next to the model the job saved.
    model_dir = Path(summary["model_dir"])
    assert run.path.parent.parent == model_dir.parent

    artifact = run.artifact("model-text-classification-retrain:v1")
    assert "final_model" in artifact.aliases and artifact.type == "model"
    assert artifact.metadata["final_model"] is True
    assert artifact.metadata["eval/eval_loss"] == pytest.approx(run.summary["eval/loss"])
    downloaded = artifact.download(tmp_path / "artifact")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in downloaded.iterdir()
    }

    # Load it back as W&B's Hugging Face guide shows, and classify.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(downloaded)
    tokenizer = AutoTokenizer.from_pretrained(downloaded)
    model.eval()
    with torch.no_grad():
        logits = model(**tokenizer([POSITIVE, NEGATIVE], padding=True, return_tensors="pt")).logits
    labels = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert labels == ["positive", "negative"]


@pytest.mark.slow
def test_wandb_disabled_writes_nothing_and_tuning_works(tmp_path: Path) -> None:
    job = yaml.safe_load((EXAMPLE / "job.yaml").read_text())
    job["app"]["source"] = str(EXAMPLE)
    job["search_space"] = str(EXAMPLE / job["search_space"])
    job["tuning"].update(max_trials=2, parallel_trials=2)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))

    done, summary = _run_local(tmp_path, job_file, WANDB_DISABLED="true")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert summary["status"] == "succeeded"
    assert [t["state"] for t in summary["trials"]] == ["SUCCEEDED", "SUCCEEDED"]
    assert Path(summary["model_dir"], "model.safetensors").is_file()
    written = [p for p in tmp_path.rglob("*") if "wandb" in p.name and p.name != "wandb-config"]
    assert written == []
