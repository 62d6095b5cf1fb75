"""The digits example: its search space matches its Hydra config, and it trains and saves a model."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_vertex import search_space as ss

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"


def test_every_parameter_exists_in_the_config_it_applies_to() -> None:
    space = ss.load(EXAMPLE / "search_space.yaml")
    model = space.param("model")
    with initialize_config_dir(str(EXAMPLE / "conf"), version_base=None):
        for option in model.values:
            cfg = compose("config", overrides=[f"model={option}"])
            for p in space.params:
                if p.key == "model" or (p.parent == "model" and option not in p.parent_values):
                    continue
                assert OmegaConf.select(cfg, p.key) is not None, (p.key, option)


def test_trains_and_saves_the_model(tmp_path: Path) -> None:
    env = dict(os.environ, AIP_MODEL_DIR=str(tmp_path / "model"))
    proc = subprocess.run(
        [sys.executable, "train.py", "model=svm", "model.C=3.0", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "model" / "model.pkl", "rb") as f:
        model = pickle.load(f)
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    assert model.score(x[:200], y[:200]) > 0.9
    assert "val_error=" in proc.stderr + proc.stdout


@pytest.mark.parametrize("option", ["sgd", "svm"])
def test_each_model_option_runs(tmp_path: Path, option: str) -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", f"model={option}", f"hydra.run.dir={tmp_path}"],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
