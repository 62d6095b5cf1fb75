"""The suggester, checked on StudySpecs built by the project's own search-space translation, and a
16-trial Branin job through the real SDK on the emulator (slow)."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
from _helpers import worker_pool

from hydra_vertex.emulator.suggester import (
    PastTrial,
    model_for,
    startup_trials,
    suggest,
)
from hydra_vertex.search_space import from_mapping

BRANIN_OPTIMUM = 0.397887


def _spec(params: dict[str, Any], algorithm: str = "bayesian") -> Any:
    space = from_mapping(
        {"metric": "loss", "direction": "minimize", "algorithm": algorithm, "params": params}
    )
    return space.to_study_spec()


def _two_metrics(params: dict[str, Any], goals: tuple[str, str]) -> Any:
    from google.cloud.aiplatform_v1.types import StudySpec

    spec = _spec(params)
    spec.metrics = [
        StudySpec.MetricSpec(metric_id=name, goal=StudySpec.MetricSpec.GoalType[goal])
        for name, goal in zip(("a", "b"), goals, strict=True)
    ]
    return spec


def _branin(p: dict[str, Any]) -> float:
    x, y = float(p["x"]), float(p["y"])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10


MIXED = {
    "lr": "tag(log, interval(1e-5, 1e-1))",
    "momentum": "tag(reverse_log, interval(0.5, 0.999))",
    "width": "choice(16, 32, 64, 128)",
    "model": "choice(mlp, cnn)",
    "depth": {"values": "int(interval(1, 4))", "when": {"model": ["cnn"]}},
}
BRANIN = {"x": "interval(-5, 10)", "y": "interval(0, 15)"}


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
    spec = _spec(BRANIN)
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


def test_small_space_is_covered_before_any_point_repeats() -> None:
    spec = _spec({"a": "choice(1, 2, 3)", "b": "choice(x, y)"})
    past: list[PastTrial] = []
    for i in range(6):
        p = suggest(spec, past, seed=3)
        assert p is not None
        past.append(PastTrial(p, float(i % 4)))
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


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(BRANIN, 3, id="continuous: d + 1"),
        pytest.param({f"x{i}": "interval(0, 1)" for i in range(6)}, 7, id="hartmann-like"),
        pytest.param({"a": "choice(1, 2, 3)", "b": "choice(x, y)"}, 2, id="6 points: at least 2"),
        pytest.param({"a": "int(interval(1, 10))", "b": "choice(x, y)"}, 3, id="20 points"),
    ],
)
def test_startup_is_about_d_plus_one_and_fewer_in_small_spaces(
    params: dict[str, Any], expected: int
) -> None:
    assert startup_trials(_spec(params)) == expected


def test_startup_is_space_filling_and_ignores_the_values() -> None:
    """The QMC start covers the square better than chance and does not depend on the results."""
    spec = _spec({"x": "interval(0, 1)", "y": "interval(0, 1)"})
    n = startup_trials(spec)
    starts = []
    for values in (lambda i: float(i), lambda i: float(-i)):
        past: list[PastTrial] = []
        for i in range(n):
            p = suggest(spec, past, seed=11)
            assert p is not None
            past.append(PastTrial(p, values(i)))
        starts.append([t.parameters for t in past])
    assert starts[0] == starts[1]
    quadrants = {(float(p["x"]) < 0.5, float(p["y"]) < 0.5) for p in starts[0]}
    assert len(quadrants) == n  # 3 Sobol points land in 3 different quadrants


@pytest.mark.parametrize(
    ("params", "model"),
    [
        pytest.param(BRANIN, "gp", id="continuous"),
        pytest.param(
            {"m": "choice(svm, knn)", "c": "int(interval(-3, 3))", "g": "interval(0, 1)"},
            "gp",
            id="mostly numeric",
        ),
        pytest.param(
            {"m": "choice(a, b)", "o": "choice(x, y, z)", "c": "interval(0, 1)"},
            "tpe",
            id="mostly categorical",
        ),
        pytest.param(MIXED, "tpe", id="conditional"),
    ],
)
def test_model_is_chosen_from_the_space(params: dict[str, Any], model: str) -> None:
    assert model_for(_spec(params)) == model


def test_gp_finds_branin_in_twenty_trials_two_in_parallel() -> None:
    """The engine the 16-trial SDK test relies on, without processes: 2 slots, asked in order."""
    spec = _spec(BRANIN)
    past: list[PastTrial] = []
    for _ in range(20):
        p = suggest(spec, past, seed=2)
        assert p is not None
        if past and past[-1].pending:  # two in flight: the earlier one completes first
            past[-1] = PastTrial(past[-1].parameters, _branin(past[-1].parameters))
        past.append(PastTrial(p, None, pending=True))
    best = min(_branin(t.parameters) for t in past)
    assert best - BRANIN_OPTIMUM < 0.5, best


def _finished(n: int, bounds: dict[str, tuple[float, float]], fn: Any) -> list[PastTrial]:
    """``n`` finished trials at seeded random points (integers where both bounds are ints)."""
    import random

    rng = random.Random(7)
    points = [
        {
            k: float(rng.randint(lo, hi)) if isinstance(lo, int) else rng.uniform(lo, hi)
            for k, (lo, hi) in bounds.items()
        }
        for _ in range(n)
    ]
    return [PastTrial(dict(p), fn(p)) for p in points]


def test_told_its_budget_the_gp_ends_searching_around_the_best_trial() -> None:
    """The last 35% of a 16-trial Branin job searches 0.3 of each range around the best trial
    (integers too); before that the budget changes nothing."""
    spec = _spec({**BRANIN, "n": "int(interval(1, 100))"})

    def fn(p: dict[str, Any]) -> float:
        return _branin(p) + abs(float(p["n"]) - 40) / 10

    bounds = {"x": (-5.0, 10.0), "y": (0.0, 15.0), "n": (1, 100)}
    past = _finished(9, bounds, fn)
    assert suggest(spec, past, seed=3, budget=16) == suggest(spec, past, seed=3)
    past = _finished(11, bounds, fn)
    best = min(past, key=lambda t: fn(t.parameters)).parameters
    p = suggest(spec, past, seed=3, budget=16)
    assert p is not None
    for key, span in (("x", 15.0), ("y", 15.0), ("n", 99.0)):
        assert abs(float(p[key]) - float(best[key])) <= 0.15 * span + 1, (key, p, best)


def test_the_local_phase_waits_for_two_model_trials_per_parameter() -> None:
    """Six parameters, 20 trials: the start takes 7 and the global phase 12, so only the last
    trial is local; at 50 trials the last 35% (18) are."""
    spec = _spec({f"x{i}": "interval(0, 1)" for i in range(6)})

    def fn(p: dict[str, Any]) -> float:
        return sum((float(v) - 0.3) ** 2 for v in p.values())

    bounds = {f"x{i}": (0.0, 1.0) for i in range(6)}
    past = _finished(18, bounds, fn)
    assert suggest(spec, past, seed=1, budget=20) == suggest(spec, past, seed=1)
    past = _finished(32, bounds, fn)
    assert suggest(spec, past, seed=1, budget=50) != suggest(spec, past, seed=1)


def test_several_objectives_follow_each_metric_goal() -> None:
    """a = y + x/10 (MINIMIZE) and b = x - y (MAXIMIZE) both want y = 0: once the model takes
    over, it asks low y far more often than the space-filling start does."""
    spec = _two_metrics({"x": "interval(0, 1)", "y": "interval(0, 1)"}, ("MINIMIZE", "MAXIMIZE"))
    n = startup_trials(spec)
    past: list[PastTrial] = []
    for _ in range(n + 10):
        p = suggest(spec, past, seed=4)
        assert p is not None
        x, y = float(p["x"]), float(p["y"])
        past.append(PastTrial(p, (y + x / 10, x - y)))
    model_ys = [float(t.parameters["y"]) for t in past[n:]]
    assert statistics.median(model_ys) < 0.25, model_ys


def test_several_objectives_take_running_and_infeasible_trials() -> None:
    spec = _two_metrics(MIXED, ("MINIMIZE", "MINIMIZE"))
    past: list[PastTrial] = []
    for i in range(10):
        p = suggest(spec, past, seed=6)
        assert p is not None
        value = None if i == 3 else [float(i % 3), float(-i)]  # trial 4 infeasible
        past.append(PastTrial(p, value, pending=i == 9))
    p = suggest(spec, past, seed=6)
    assert p is not None and p["model"] in ("mlp", "cnn")


def test_a_value_per_metric_is_required() -> None:
    spec = _two_metrics(BRANIN, ("MINIMIZE", "MAXIMIZE"))
    past = [PastTrial({"x": float(i), "y": float(i)}, (float(i), 1.0)) for i in range(4)]
    past.append(PastTrial({"x": 5.0, "y": 5.0}, 1.0))
    with pytest.raises(ValueError, match=r"1 value\(s\) for 2 metrics \['a', 'b'\]"):
        suggest(spec, past, seed=0)


def test_one_metric_accepts_a_one_element_sequence() -> None:
    spec = _spec(BRANIN)
    plain = [PastTrial({"x": float(i), "y": float(i)}, float(i)) for i in range(5)]
    listed = [PastTrial(t.parameters, [float(t.value)]) for t in plain]  # type: ignore[arg-type]
    assert suggest(spec, plain, seed=1) == suggest(spec, listed, seed=1)


@pytest.mark.slow
def test_sixteen_trial_branin_jobs_end_near_the_optimum(sdk: Any) -> None:
    """Issue 17's target: 16 trials, 2 in parallel, through the official SDK and the shim, within
    0.5 of Branin's optimum on at least 9 of 10 seeds (the jobs run side by side).

    The runner tells the engine the job's budget, so its last trials refine the best basin found
    (the local phase): 10 of 10, every gap under 0.13, in the two runs counted here. Optuna's GP
    left global reached it on about half the seeds; the others stuck on the box's edge at
    (10, 3)."""
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    shim = str(Path(sys.executable).with_name("hydra-vertex-shim"))
    fast_branin = [shim, "--search-space", "space.yaml", "--", sys.executable, "fast_app.py"]
    jobs = []
    for seed in range(10):
        custom = sdk.CustomJob(
            display_name=f"branin16-{seed}-trial", worker_pool_specs=worker_pool(fast_branin)
        )
        job = sdk.HyperparameterTuningJob(
            display_name=f"branin16-{seed}",
            custom_job=custom,
            metric_spec={"value": "minimize"},
            parameter_spec={
                "x": hpt.DoubleParameterSpec(-5, 10, "linear"),
                "y": hpt.DoubleParameterSpec(0, 15, "linear"),
            },
            max_trial_count=16,
            parallel_trial_count=2,
            labels={"hydra-vertex-seed": str(seed)},
        )
        job.run(sync=False)
        jobs.append(job)
    gaps = []
    for job in jobs:
        job.wait()
        assert job.state.name == "JOB_STATE_SUCCEEDED"
        trials = job.trials
        assert len(trials) == 16
        assert all(t.state.name == "SUCCEEDED" for t in trials)
        best = min(t.final_measurement.metrics[0].value for t in trials)
        gaps.append(round(best - BRANIN_OPTIMUM, 3))
    near = sum(g < 0.5 for g in gaps)
    assert near >= 9, f"issue 17 target: 9 of 10 seeds within 0.5, got {near}: gaps {gaps}"
