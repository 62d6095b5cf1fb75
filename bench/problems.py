"""Benchmark problems for the search-quality benchmark (standard library only: the sweeper's own
virtual environment imports this file too).

Each problem has a search space written once in Hydra's sweep grammar (the mapping every method
reads), a known optimum, and an objective evaluated in process.
"""

from __future__ import annotations

import csv
import math
from functools import cache
from pathlib import Path
from typing import Any

DIGITS_CSV = Path(__file__).parent / "data" / "digits_grid.csv"

_HARTMANN_A = (
    (10.0, 3.0, 17.0, 3.5, 1.7, 8.0),
    (0.05, 10.0, 17.0, 0.1, 8.0, 14.0),
    (3.0, 3.5, 1.7, 10.0, 17.0, 8.0),
    (17.0, 8.0, 0.05, 10.0, 0.1, 14.0),
)
_HARTMANN_P = (
    (0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
    (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
    (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
    (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381),
)
_HARTMANN_ALPHA = (1.0, 1.2, 3.0, 3.2)


def branin(p: dict[str, Any]) -> float:
    x, y = float(p["x"]), float(p["y"])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10


def hartmann6(p: dict[str, Any]) -> float:
    x = [float(p[f"x{i}"]) for i in range(6)]
    total = 0.0
    for a, pp, alpha in zip(_HARTMANN_A, _HARTMANN_P, _HARTMANN_ALPHA, strict=True):
        total += alpha * math.exp(-sum(a[j] * (x[j] - pp[j]) ** 2 for j in range(6)))
    return -total


def ackley5(p: dict[str, Any]) -> float:
    x = [float(p[f"x{i}"]) for i in range(5)]
    n = len(x)
    s1 = sum(v * v for v in x) / n
    s2 = sum(math.cos(2 * math.pi * v) for v in x) / n
    return -20 * math.exp(-0.2 * math.sqrt(s1)) - math.exp(s2) + 20 + math.e


@cache
def _digits_table() -> dict[tuple[str, int, int, int], float]:
    with open(DIGITS_CSV, newline="") as fh:
        return {
            (r["model"], int(r["features"]), int(r["c_exp"]), int(r["g_exp"])): float(
                r["val_error"]
            )
            for r in csv.DictReader(fh)
        }


def digits(p: dict[str, Any]) -> float:
    key = (
        str(p["model"]),
        round(float(p["features"])),
        round(float(p["c_exp"])),
        round(float(p["g_exp"])),
    )
    return _digits_table()[key]


def _digits_optimum() -> float:
    return min(_digits_table().values())


PROBLEMS: dict[str, dict[str, Any]] = {
    "branin": {
        "fn": branin,
        "optimum": 0.397887,
        "params": {"x": "interval(-5, 10)", "y": "interval(0, 15)"},
    },
    "hartmann6": {
        "fn": hartmann6,
        "optimum": -3.32237,
        "params": {f"x{i}": "interval(0, 1)" for i in range(6)},
    },
    "ackley5": {
        "fn": ackley5,
        "optimum": 0.0,
        "params": {f"x{i}": "interval(-32.768, 32.768)" for i in range(5)},
    },
    "digits": {
        "fn": digits,
        "optimum": None,  # the table's minimum, read lazily
        "params": {
            "model": "choice(svm, logreg, knn)",
            "features": "int(interval(1, 4))",
            "c_exp": "int(interval(-3, 3))",
            "g_exp": "int(interval(-5, -1))",
        },
    },
}


def optimum(name: str) -> float:
    value = PROBLEMS[name]["optimum"]
    return _digits_optimum() if value is None else float(value)


def evaluate(name: str, params: dict[str, Any]) -> float:
    return float(PROBLEMS[name]["fn"](params))


def durations(problem: str, seed: int, n: int, sigma: float = 0.5) -> list[float]:
    """Simulated trial durations (log-normal, median 1), fixed per (problem, seed)."""
    import random

    rng = random.Random(f"{problem}-{seed}")
    return [rng.lognormvariate(0.0, sigma) for _ in range(n)]
