"""hydra-vertex: stand-ins for torch.optim.Adam and ReduceLROnPlateau, holding their settings for
a scikit-learn MLPClassifier (see VENDORED.md)."""

from typing import Any


class Adam:
    def __init__(self, params: Any = None, lr: float = 0.001, weight_decay: float = 0.0) -> None:
        self.lr = lr
        self.weight_decay = weight_decay


class ReduceLROnPlateau:
    def __init__(self, optimizer: Any = None, **kwargs: Any) -> None:
        self.optimizer = optimizer
        self.settings = kwargs
