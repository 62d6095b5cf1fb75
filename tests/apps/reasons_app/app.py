"""A Hydra app that fails the ways real apps do (``FAIL=<mode>``, or ``+fail=<mode>``), for
tests/test_reasons.py (its outputs, captured, are the rows of the deciding-line table in
tests/data/reasons/) and tests/test_byo_app.py.
"""

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> object:
    mode = os.environ.get("FAIL") or cfg.get("fail", "")
    if mode == "runtime":
        raise RuntimeError(f"diverged at lr={cfg.lr}")
    if mode == "struct":
        return cfg.model.missing
    if mode == "mandatory":
        return cfg.needed
    if mode == "instantiate":
        hydra.utils.instantiate({"_target_": "src.models.Nope"})
    if mode == "chained":
        try:
            {}["k"]
        except KeyError as e:
            raise ValueError("bad value\nsecond line") from e
    if mode == "ansi":  # a coloured logger (as colorlog's) and a coloured message
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("\x1b[31m[%(levelname)s]\x1b[0m %(message)s"))
        log.addHandler(handler)
        log.error("\x1b[1mloss is nan\x1b[0m")
        raise FloatingPointError("\x1b[31mloss is nan at step 3\x1b[0m")
    if mode == "coloured":  # a coloured log line, then a mapping without the tuned metric
        print("\x1b[33mWARNING\x1b[0m \x1b[1mno val_accuracy this epoch\x1b[0m", file=sys.stderr)
    if mode == "exit3":
        print("fatal: dataset missing at data/x.csv", file=sys.stderr)
        sys.exit(3)
    return {"val_loss": 0.5, "acc": 0.9}


if __name__ == "__main__":
    main()
