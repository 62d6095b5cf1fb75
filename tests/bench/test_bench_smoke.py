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
def test_overhead_part_runs_real_trials_on_a_regular_and_an_editable_install(tmp_path: Path) -> None:
    import processes

    out = processes.overhead(2, tmp_path)
    for figures in (out, out["editable"]):
        assert figures["trials"] >= 2
        assert figures["direct_ms"] > 0 and figures["emulator_ms_per_trial"] > 0
        assert math.isfinite(figures["added"])
    assert out["gp_ask_ms"] > 0
    # the headline figure is a wheel installed in a venv of its own; the other, this checkout's
    assert out["install"].startswith("regular") and out["python"].startswith(str(tmp_path))
    assert out["editable"]["install"].startswith("editable") and out["editable"]["python"] == sys.executable


def test_the_table_names_each_figures_install_and_load(capsys: pytest.CaptureFixture[str]) -> None:
    import run as bench

    def figures(install: str, added: float) -> dict[str, object]:
        return {"install": install, "trials": 8, "direct_ms": 300.0, "emulator_ms_per_trial": 340.0,
                "added": added, "trial_span_ms": 330.0}

    load = {"start": [1.5, 1.2, 1.0], "end": [1.7, 1.3, 1.0]}
    result = {
        "overhead_ms_per_trial": {**figures("regular (wheel, bytecode)", 40.0), "gp_ask_ms": 30.0,
                                  "editable": figures("editable (pip install -e)", 70.0),
                                  "load_average": load},
        "pipeline": {"runs": [{"wall": 16.0, "ideal_seconds": 14.5, "tuning_job_seconds": 13.8}],
                     "load_average": load},
        "pipeline_overhead_ratio": 16.0 / 14.5,
        "timings_seconds": {"B1": 60.0, "C": 20.0, "total": 80.0},
    }
    result["targets"] = bench.check_targets(result)
    bench.print_table(result)
    out = capsys.readouterr().out
    assert "regular (wheel, bytecode)" in out and "-> added 40 ms" in out
    assert "editable (pip install -e)" in out and "-> added 70 ms" in out
    assert out.count("load avg 1.5 -> 1.7") == 2
    assert result["targets"]["overhead_ms"]["met"] and result["targets"]["pipeline_ratio"]["met"]
