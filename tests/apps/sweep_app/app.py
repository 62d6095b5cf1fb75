"""A plain Hydra app for the sweeper's tests (``python app.py -m hydra/sweeper=vertex``).

Each run writes ``run.json`` (its interpreter, the values it ran with) to its Hydra output
directory and, when ``AIP_MODEL_DIR`` is set, a model file there; it returns the objective, a
smooth function of ``lr`` and the model's width (best near lr=0.1, the small model).
``SWEEP_APP_MODULES=FILE`` writes which hydra-vertex and heavy modules are loaded, to show that a
run that does not select the sweeper loads none of them.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

WATCHED = (
    "hydra_vertex",
    "hydra_plugins.hydra_vertex_sweeper._impl",
    "google.cloud.aiplatform",
    "optuna",
    "kfp",
    "torch",
)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    watch = os.environ.get("SWEEP_APP_MODULES")
    if watch:
        Path(watch).write_text(json.dumps(sorted(m for m in WATCHED if m in sys.modules)))
    time.sleep(float(cfg.sleep))
    out = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    run = {
        "executable": sys.executable,
        "cwd": os.getcwd(),
        "lr": cfg.lr,
        "model": cfg.model.name,
        "epochs": cfg.epochs,
        "tag": cfg.tag,
    }
    (out / "run.json").write_text(json.dumps(run))
    model_dir = os.environ.get("AIP_MODEL_DIR")
    if model_dir:
        os.makedirs(model_dir, exist_ok=True)
        Path(model_dir, "model.json").write_text(json.dumps(run))
    return (math.log10(cfg.lr) + 1) ** 2 + cfg.model.width / 100


if __name__ == "__main__":
    main()
