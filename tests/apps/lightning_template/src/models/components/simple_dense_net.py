"""hydra-vertex: a stand-in for the template's SimpleDenseNet (same arguments): the layer sizes of
a scikit-learn MLPClassifier instead of a torch module (see VENDORED.md)."""


class SimpleDenseNet:
    def __init__(
        self,
        input_size: int = 784,
        lin1_size: int = 256,
        lin2_size: int = 256,
        lin3_size: int = 256,
        output_size: int = 10,
    ) -> None:
        self.input_size = input_size
        self.hidden_layer_sizes = (lin1_size, lin2_size, lin3_size)
        self.output_size = output_size
