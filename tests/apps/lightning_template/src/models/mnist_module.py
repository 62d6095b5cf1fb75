"""hydra-vertex: a stand-in for the template's MNISTLitModule (same arguments): a scikit-learn
MLPClassifier with the net's layer sizes and the optimizer's learning rate and weight decay
(see VENDORED.md)."""

from typing import Any, Callable


class MNISTLitModule:
    def __init__(
        self,
        net: Any,
        optimizer: Callable[..., Any],
        scheduler: Callable[..., Any],
        compile: bool = False,
    ) -> None:
        from sklearn.neural_network import MLPClassifier

        self.net = net
        self.optimizer = optimizer(params=None)
        self.classifier = MLPClassifier(
            hidden_layer_sizes=net.hidden_layer_sizes,
            learning_rate_init=self.optimizer.lr,
            alpha=self.optimizer.weight_decay,
            random_state=0,
        )
