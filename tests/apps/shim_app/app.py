"""A real Hydra app for the shim tests: writes the composed config as JSON.

Environment: ``SHIM_APP_OUT`` (the JSON path; the default is ``composed.json`` in the working
directory) and ``SHIM_APP_EXIT`` (exit with that code after writing, or ``KILL`` to kill itself with
SIGKILL) for the exit-code tests; ``SHIM_APP_RETURN``: the value it returns (default 0.5).
"""

from __future__ import annotations

import json
import os
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    data["_run_dir"] = HydraConfig.get().run.dir
    data["_pid"] = os.getpid()
    out = os.environ.get("SHIM_APP_OUT", "composed.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    code = os.environ.get("SHIM_APP_EXIT")
    if code == "KILL":
        os.kill(os.getpid(), signal.SIGKILL)
    if code:
        sys.exit(int(code))
    return float(os.environ.get("SHIM_APP_RETURN", "0.5"))


if __name__ == "__main__":
    main()
