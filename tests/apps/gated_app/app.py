"""A Hydra app that runs until the test lets it finish: the lifecycle tests see it running.

It prints a line to stdout and one to stderr, reports ``steps`` intermediate values, then waits
until the file ``<gate>/<trial id>`` (``<gate>/job`` outside a trial) exists, prints ``done`` and
returns ``(x - 1)^2``. Without ``gate`` it does not wait.
"""

from __future__ import annotations

import os
import sys
import time

import hydra
from omegaconf import DictConfig

from hydra_vertex.reporting import report


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    trial = os.environ.get("CLOUD_ML_TRIAL_ID", "job")
    value = (float(cfg.x) - 1.0) ** 2
    print(f"gated: trial {trial} starts with x={cfg.x}", flush=True)
    print(f"gated: trial {trial} writes to stderr too", file=sys.stderr, flush=True)
    for step in range(int(cfg.steps)):
        report(value + 1.0 / (step + 1), step=step)
        print(f"gated: trial {trial} step {step}", flush=True)
    if cfg.gate:
        release = os.path.join(str(cfg.gate), trial)
        while not os.path.exists(release):
            time.sleep(0.05)
    print(f"gated: trial {trial} done", flush=True)
    return value


if __name__ == "__main__":
    main()
