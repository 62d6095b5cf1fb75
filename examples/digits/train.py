"""Train a small classifier on scikit-learn's bundled digits data (no download), set up by Hydra.

    python train.py                         # defaults from conf/config.yaml
    python train.py model=svm model.C=3.0   # pick another model, override a field

Returns the validation error (lower is better): hydra-vertex reports it as the tuning objective.
When ``AIP_MODEL_DIR`` is set (a Vertex or emulator job), the fitted model is saved there.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig) -> Any:
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if cfg.model.name == "sgd":
        clf = SGDClassifier(
            loss="log_loss",
            alpha=float(cfg.model.alpha),
            max_iter=int(cfg.trainer.max_iter),
            learning_rate="optimal",
            random_state=int(cfg.seed),
        )
    elif cfg.model.name == "svm":
        clf = SVC(C=float(cfg.model.C), gamma=float(cfg.model.gamma), random_state=int(cfg.seed))
    else:
        raise ValueError(f"model.name must be 'sgd' or 'svm', got {cfg.model.name!r}")
    return make_pipeline(StandardScaler(), clf)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # small max_iter is on purpose

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=float(cfg.val_fraction), random_state=int(cfg.seed), stratify=y
    )
    model = build_model(cfg)
    model.fit(x_train, y_train)
    val_error = 1.0 - float(model.score(x_val, y_val))
    log.info("model=%s val_error=%.4f", cfg.model.name, val_error)

    model_dir = os.environ.get("AIP_MODEL_DIR")
    if model_dir:
        out = Path(model_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "model.pkl", "wb") as f:
            pickle.dump(model, f)
        (out / "metrics.json").write_text(json.dumps({"val_error": val_error}))
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        log.info("saved model to %s", out)
    return val_error


if __name__ == "__main__":
    main()
