"""A real Hydra app with a learning curve, for the GPU and early-stopping tests.

Each epoch reports ``loss = rate + 1 / epoch`` (``hydra_vertex.reporting.report``) and takes
``epoch_seconds``: the curve is a function of the parameters alone, so which trials early stopping
stops does not depend on timing. It returns the last loss (the trial's objective). With
``record_dir`` set it writes ``<record_dir>/<trial id or name>.json``: the GPUs it was given
(``CUDA_VISIBLE_DEVICES``, ``NVIDIA_VISIBLE_DEVICES``; null when unset) and when it started and
ended (``time.time()``; the end is also written when the emulator stops it with SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import hydra
from omegaconf import DictConfig

from hydra_vertex.reporting import report


def _record(cfg: DictConfig, **fields: object) -> None:
    if not cfg.record_dir:
        return
    name = os.environ.get("CLOUD_ML_TRIAL_ID") or str(cfg.name)
    path = Path(str(cfg.record_dir)) / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(fields)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    _record(
        cfg,
        cuda=os.environ.get("CUDA_VISIBLE_DEVICES"),
        nvidia=os.environ.get("NVIDIA_VISIBLE_DEVICES"),
        start=time.time(),
        end=None,
    )

    def stopped(signum: int, frame: FrameType | None) -> None:
        _record(cfg, end=time.time(), stopped=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    loss = float("nan")
    for epoch in range(1, int(cfg.epochs) + 1):
        loss = float(cfg.rate) + 1.0 / epoch
        report(loss, step=epoch)
        time.sleep(float(cfg.epoch_seconds))  # the epoch's training
    _record(cfg, end=time.time(), stopped=False)
    return loss


if __name__ == "__main__":
    main()
