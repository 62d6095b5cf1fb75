"""Smoke tests of the benchmark code (bench/): problems, the simulated runner loop, the summary."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import problems  # noqa: E402
import search_quality  # noqa: E402


def test_problems_reach_their_known_optimum() -> None:
    x = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
    assert problems.evaluate("branin", {"x": math.pi, "y": 2.275}) == pytest.approx(0.397887, 1e-5)
    hart = problems.evaluate("hartmann6", {f"x{i}": v for i, v in enumerate(x)})
    assert hart == pytest.approx(problems.optimum("hartmann6"), abs=1e-4)
    assert problems.evaluate("ackley5", {f"x{i}": 0.0 for i in range(5)}) == pytest.approx(0.0)
    # the digits table covers the whole mixed grid; integers may arrive as floats (Vertex style)
    best = problems.evaluate("digits", {"model": "svm", "features": 4.0, "c_exp": 3, "g_exp": -4})
    assert best == problems.optimum("digits")
    assert len(problems._digits_table()) == 3 * 4 * 7 * 5


def test_durations_are_fixed_per_problem_and_seed() -> None:
    assert problems.durations("branin", 3, 5) == problems.durations("branin", 3, 5)
    assert problems.durations("branin", 3, 5) != problems.durations("branin", 4, 5)


@pytest.mark.parametrize("problem", ["branin", "digits"])
def test_each_method_runs_through_the_shared_space(problem: str) -> None:
    for method in ("random", "tpe_sequential", "hydra_vertex"):
        _, _, _, values = search_quality._one((method, problem, 0, 4, 2))
        assert len(values) == 4 and all(math.isfinite(v) for v in values)


def test_async_loop_keeps_two_pending_and_never_repeats_a_point() -> None:
    values = search_quality.run_async("branin", 1, 6, 2, "random")
    assert len(set(values)) == 6


def test_summary_ratios_are_paired_against_random() -> None:
    opt = problems.optimum("branin")
    values = {
        "branin": {
            "random": {0: [opt + 2.0], 1: [opt + 4.0]},
            "tpe_sequential": {0: [opt + 1.0], 1: [opt + 1.0]},
            "sync_batch": {},
            "hydra_vertex": {0: [opt + 3.5, opt + 0.2], 1: [opt + 0.4]},
        }
    }
    out = search_quality.summarize(values)["branin"]
    assert out["random"]["regret_ratio_vs_random"] == pytest.approx(1.0)
    assert out["tpe_sequential"]["regret_ratio_vs_random"] == pytest.approx(0.375, rel=1e-2)
    assert out["hydra_vertex"]["regret_ratio_vs_random"] == pytest.approx(0.1, rel=2e-2)
    assert out["hydra_vertex"]["trials_to_target"] == 1.5  # median of 2 and 1
    lo, hi = out["hydra_vertex"]["log_ratio_ci95"]
    assert lo <= out["hydra_vertex"]["log_ratio_mean"] <= hi
    assert "sync_batch" not in out


@pytest.mark.slow
def test_overhead_part_runs_real_trials(tmp_path: Path) -> None:
    import processes

    out = processes.overhead(2, tmp_path)
    assert out["trials"] >= 2
    assert out["direct_ms"] > 0 and out["emulator_ms_per_trial"] > 0
    assert math.isfinite(out["added"]) and out["gp_ask_ms"] > 0
