"""A Hydra app whose runs wait at a gate: until the file ``gate`` exists (empty: no gate).

Each run writes its pid to ``pids/<pid>`` (when ``pids`` is set) before waiting, so a test can
see that a cancel left no process behind; a model file goes to ``AIP_MODEL_DIR`` when it is set.
The objective is a smooth function of ``lr`` (best at 0.1).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    if cfg.pids:
        Path(cfg.pids).mkdir(parents=True, exist_ok=True)
        Path(cfg.pids, str(os.getpid())).touch()
    deadline = time.monotonic() + 600
    while cfg.gate and not Path(cfg.gate).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    model_dir = os.environ.get("AIP_MODEL_DIR")
    if model_dir:
        os.makedirs(model_dir, exist_ok=True)
        Path(model_dir, "model.txt").write_text(str(cfg.lr))
    return (math.log10(cfg.lr) + 1) ** 2


if __name__ == "__main__":
    main()
