"""The suggester, checked on StudySpecs built by the project's own search-space translation."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hydra_vertex.emulator.suggester import PastTrial, suggest
from hydra_vertex.search_space import from_mapping


def _spec(params: dict[str, Any], algorithm: str = "bayesian") -> Any:
    space = from_mapping(
        {"metric": "loss", "direction": "minimize", "algorithm": algorithm, "params": params}
    )
    return space.to_study_spec()


MIXED = {
    "lr": "tag(log, interval(1e-5, 1e-1))",
    "momentum": "tag(reverse_log, interval(0.5, 0.999))",
    "width": "choice(16, 32, 64, 128)",
    "model": "choice(mlp, cnn)",
    "depth": {"values": "int(interval(1, 4))", "when": {"model": ["cnn"]}},
}


@pytest.mark.parametrize("algorithm", ["bayesian", "random"])
def test_values_stay_in_space_and_conditions_hold(algorithm: str) -> None:
    spec = _spec(MIXED, algorithm)
    past: list[PastTrial] = []
    for i in range(12):
        p = suggest(spec, past, seed=1)
        assert p is not None
        assert 1e-5 <= float(p["lr"]) <= 1e-1
        assert 0.5 <= float(p["momentum"]) <= 0.999
        assert float(p["width"]) in (16.0, 32.0, 64.0, 128.0)
        assert p["model"] in ("mlp", "cnn")
        assert ("depth" in p) == (p["model"] == "cnn")
        if "depth" in p:
            assert float(p["depth"]) in (1.0, 2.0, 3.0, 4.0)
        past.append(PastTrial(p, math.log(float(p["lr"])) ** 2 + i))


def test_parallel_asks_do_not_repeat_pending() -> None:
    spec = _spec({"x": "interval(-5, 10)", "y": "interval(0, 15)"})
    past = [PastTrial({"x": float(i), "y": float(i)}, float(i)) for i in range(10)]
    first = suggest(spec, past, seed=0)
    assert first is not None
    second = suggest(spec, [*past, PastTrial(first, None, pending=True)], seed=0)
    assert second is not None and second != first


def test_grid_enumerates_then_is_exhausted() -> None:
    spec = _spec({"a": "choice(1, 2, 3)", "b": "choice(x, y)"}, "grid")
    past: list[PastTrial] = []
    while (p := suggest(spec, past)) is not None:
        past.append(PastTrial(p, None, pending=True))
    assert len(past) == 6
    assert len({tuple(sorted(t.parameters.items())) for t in past}) == 6


@pytest.mark.parametrize("algorithm", ["bayesian", "random"])
def test_same_seed_same_trials_whatever_the_parameter_order(algorithm: str) -> None:
    """A pipeline's search_space travels as an unordered struct: order must not matter."""
    forward = _spec(MIXED, algorithm)
    backward = _spec(dict(reversed(list(MIXED.items()))), algorithm)
    assert [p.parameter_id for p in forward.parameters] != [
        p.parameter_id for p in backward.parameters
    ]
    runs = []
    for spec in (forward, backward):
        past: list[PastTrial] = []
        for i in range(12):
            p = suggest(spec, past, seed=5)
            assert p is not None
            past.append(PastTrial(p, math.log(float(p["lr"])) ** 2 + i))
        runs.append([dict(sorted(t.parameters.items())) for t in past])
    assert runs[0] == runs[1]
