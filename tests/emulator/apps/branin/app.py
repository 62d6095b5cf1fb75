"""A real Hydra app: the Branin function (global minimum 0.397887), returned as the objective.

``mode`` drives the fault tests: ``ok`` returns Branin; ``crash`` exits 3 before reporting;
``hang`` starts a grandchild and sleeps forever; ``nometric`` exits 0 without reporting;
``slow`` sleeps first; ``curve`` reports one measurement per step; ``signal`` kills itself with SIGKILL;
``wrongtag`` and ``nan`` report the wrong tag or NaN through cloudml-hypertune directly.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import hydra
from omegaconf import DictConfig


def branin(x: float, y: float) -> float:
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (y - b * x**2 + c * x - r) ** 2 + s * (1 - t) * math.cos(x) + s


_HT = None


def _hypertune(tag: str, value: float, step: int = 1) -> None:
    global _HT
    import hypertune

    _HT = _HT or hypertune.HyperTune()  # one instance keeps the history of earlier reports
    _HT.report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=tag, metric_value=value, global_step=step
    )


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float | None:
    mode = str(cfg.mode)
    if mode == "crash":
        print("branin: crashing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "hang":
        pidfile = os.path.join(os.environ["AIP_MODEL_DIR"], "..", "grandchild.pid")
        os.makedirs(os.path.dirname(pidfile), exist_ok=True)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open(pidfile, "w") as f:
            f.write(str(child.pid))
        time.sleep(3600)
    if mode == "curve":  # intermediate measurements: branin + 10/step, one per step
        for step in range(1, int(cfg.get("steps", 5)) + 1):
            _hypertune(str(cfg.metric), branin(float(cfg.x), float(cfg.y)) + 10.0 / step, step)
            time.sleep(0.3)
        os._exit(0)
    if mode == "slow":
        time.sleep(float(cfg.get("sleep", 1.0)))
    if mode == "signal":
        os.kill(os.getpid(), 9)
    if mode == "nometric":
        os._exit(0)
    if mode == "wrongtag":
        _hypertune("loss", 1.0)
        os._exit(0)
    if mode == "nan":
        _hypertune(str(cfg.metric), float("nan"))
        os._exit(0)
    return branin(float(cfg.x), float(cfg.y))


if __name__ == "__main__":
    main()
