"""Build bench/data/digits_grid.csv: validation error of scikit-learn classifiers on the bundled
digits data over a small mixed grid (one categorical and three integer parameters).

    python bench/make_digits_table.py

Run once; the CSV is shipped, and the search-quality benchmark evaluates the "digits" problem by
looking trials up in it (so a trial costs nothing and every method sees the same numbers).
"""

from __future__ import annotations

import csv
import itertools
import sys
import warnings
from pathlib import Path

OUT = Path(__file__).parent / "data" / "digits_grid.csv"
MODELS = ("svm", "logreg", "knn")
FEATURES = range(1, 5)  # PCA components 8 * 2**(features - 1): 8, 16, 32, 64
C_EXP = range(-3, 4)  # svm/logreg C = 10**c_exp; knn neighbours = 2**(c_exp + 3)
G_EXP = range(-5, 0)  # svm gamma = 10**g_exp; knn weights distance if g_exp >= -3


def main() -> int:
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = load_digits(return_X_y=True)
    xtr, xva, ytr, yva = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    rows = []
    for model, f, c, g in itertools.product(MODELS, FEATURES, C_EXP, G_EXP):
        if model == "svm":
            clf = SVC(C=10.0**c, gamma=10.0**g)
        elif model == "logreg":
            clf = LogisticRegression(C=10.0**c, max_iter=300)
        else:
            clf = KNeighborsClassifier(
                n_neighbors=2 ** (c + 3), weights="distance" if g >= -3 else "uniform"
            )
        pipe = make_pipeline(StandardScaler(), PCA(8 * 2 ** (f - 1), random_state=0), clf)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe.fit(xtr, ytr)
        err = 1.0 - float(pipe.score(xva, yva))
        rows.append((model, f, c, g, f"{err:.6f}"))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("model", "features", "c_exp", "g_exp", "val_error"))
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
