"""A Hydra app whose every run fails (for the 'no trial succeeded' path)."""

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    raise RuntimeError(f"diverged at lr={cfg.lr}")


if __name__ == "__main__":
    main()
