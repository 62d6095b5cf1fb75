"""A real Hydra app for the reporting tests.

``mode`` picks the return value: ``float`` (``value``), ``dict`` (``{"val_loss": value, "acc": 0.9}``),
``missing`` (a dict without ``val_loss``), ``nan``, ``inf``, ``none``, ``string``, ``raise`` (the task
function fails), ``epochs`` (calls ``report()`` once per epoch, then returns ``value``).
"""

from __future__ import annotations

import json
import os

import hydra
from omegaconf import DictConfig

from hydra_vertex.reporting import report


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> object:
    wandb_out = os.environ.get("REPORT_APP_WANDB_OUT")
    if wandb_out:
        with open(wandb_out, "w", encoding="utf-8") as f:
            json.dump({k: v for k, v in os.environ.items() if k.startswith("WANDB_")}, f)
    mode = str(cfg.mode)  # `nan`, `inf` parse as floats
    if mode == "float":
        return float(cfg.value)
    if mode == "dict":
        return {"val_loss": float(cfg.value), "acc": 0.9}
    if mode == "missing":
        return {"loss": float(cfg.value), "acc": 0.9}
    if mode == "nan":
        return float("nan")
    if mode == "inf":
        return float("inf")
    if mode == "none":
        return None
    if mode == "string":
        return "0.5"
    if mode == "raise":
        raise RuntimeError("training diverged")
    if mode == "epochs":
        for epoch in range(int(cfg.epochs)):
            report(1.0 / (epoch + 1), step=epoch)
        return float(cfg.value)
    raise ValueError(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
