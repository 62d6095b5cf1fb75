"""Branin without Hydra, for tests that run many trials: it starts in a fraction of app.py's time.

It keeps the trial contract of app.py: the shim turns the trial's ``--x=...`` arguments into Hydra
overrides (``x=1.5``, plus ``hydra.*`` and the reporting callback's ``++...metric=value``), and the
value is reported through cloudml-hypertune to ``CLOUD_ML_HP_METRIC_FILE`` under the space's
metric tag. The ``hydra.*`` overrides the shim adds are ignored: there is no Hydra config here.
``sleep=SECONDS`` waits that long before reporting (the restart tests kill the emulator meanwhile).
"""

from __future__ import annotations

import math
import sys
import time


def branin(x: float, y: float) -> float:
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (y - b * x**2 + c * x - r) ** 2 + s * (1 - t) * math.cos(x) + s


def main(argv: list[str]) -> int:
    values: dict[str, str] = {}
    metric = "value"
    for arg in argv:
        if arg.startswith("++hydra.callbacks.") and ".metric=" in arg:  # the reporting callback's
            metric = arg.split(".metric=", 1)[1].strip("'\"")
        elif "=" in arg and not arg.startswith(("+", "hydra.")):
            key, value = arg.split("=", 1)
            values[key] = value
    print("fast_app: started", flush=True)
    time.sleep(float(values.pop("sleep", 0)))
    import hypertune

    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=metric,
        metric_value=branin(float(values["x"]), float(values["y"])),
        global_step=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
