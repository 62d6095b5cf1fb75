"""hydra-vertex: a stand-in for lightning.pytorch.trainer.Trainer (the arguments of
configs/trainer/default.yaml): epochs of MLPClassifier.partial_fit over mini-batches, with the
template's metric names (see VENDORED.md)."""

import logging
from importlib import metadata
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


class Trainer:
    def __init__(
        self,
        default_root_dir: str = ".",
        min_epochs: int = 1,
        max_epochs: int = 10,
        **kwargs: Any,
    ) -> None:
        self.default_root_dir = default_root_dir
        self.max_epochs = max(min_epochs, max_epochs)
        self.callback_metrics: Dict[str, float] = {}
        # What Lightning prints about the machine at start, as one line about this environment.
        log.info(
            "stand-in trainer: scikit-learn %s, hydra-core %s, optuna %s (hydra-optuna-sweeper %s)",
            _version("scikit-learn"), _version("hydra-core"), _version("optuna"),
            _version("hydra-optuna-sweeper"),
        )

    def fit(self, model: Any, datamodule: Any, ckpt_path: Optional[str] = None) -> None:
        import numpy as np

        datamodule.setup()
        x, y = datamodule.data_train
        x_val, y_val = datamodule.data_val
        classes = np.arange(10)
        rng = np.random.default_rng(0)
        best = 0.0
        for epoch in range(self.max_epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), datamodule.batch_size):
                batch = order[start : start + datamodule.batch_size]
                model.classifier.partial_fit(x[batch], y[batch], classes=classes)
            acc = float(model.classifier.score(x_val, y_val))
            best = max(best, acc)
            log.info("epoch %d: val/acc=%.4f", epoch, acc)
        self.callback_metrics.update({"val/acc": acc, "val/acc_best": best})

    def test(self, model: Any, datamodule: Any, ckpt_path: Optional[str] = None) -> None:
        datamodule.setup()
        x_test, y_test = datamodule.data_test
        self.callback_metrics["test/acc"] = float(model.classifier.score(x_test, y_test))
