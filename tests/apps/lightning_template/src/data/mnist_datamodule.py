"""hydra-vertex: a stand-in for the template's MNISTDataModule (same arguments), on scikit-learn's
bundled 8x8 digits: this machine downloads no data set (see VENDORED.md)."""

from typing import Any, Tuple


class MNISTDataModule:
    def __init__(
        self,
        data_dir: str = "data/",
        train_val_test_split: Tuple[int, int, int] = (1_297, 250, 250),
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.train_val_test_split = tuple(train_val_test_split)
        self.batch_size = batch_size
        self.data_train: Any = None

    def setup(self) -> None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        if self.data_train is not None:
            return
        x, y = load_digits(return_X_y=True)
        x = x / 16.0
        n_train, n_val, n_test = self.train_val_test_split
        x_train, x_rest, y_train, y_rest = train_test_split(
            x, y, train_size=n_train, random_state=12345, stratify=y
        )
        x_val, x_test, y_val, y_test = train_test_split(
            x_rest, y_rest, train_size=n_val, test_size=n_test, random_state=12345
        )
        self.data_train = (x_train, y_train)
        self.data_val = (x_val, y_val)
        self.data_test = (x_test, y_test)
