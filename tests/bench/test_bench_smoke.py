"""Smoke tests of the benchmark code (bench/): problems, the simulated runner loop, the summary."""

from __future__ import annotations

import json
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
    for method, parallel in (
        ("random", 2),
        ("tpe_sequential", 1),
        ("hydra_vertex", 2),
        ("hydra_vertex_p4", 4),
    ):
        _, _, _, values = search_quality._one((method, problem, 0, 6, parallel))
        assert len(values) == 6 and all(math.isfinite(v) for v in values)


def test_async_loop_keeps_two_pending_and_never_repeats_a_point() -> None:
    values = search_quality.run_async("branin", 1, 6, 2, "random")
    assert len(set(values)) == 6


def test_values_come_in_the_order_asked_so_a_prefix_is_a_shorter_job() -> None:
    """Without the budget, the first b values of a 12-trial run are the values of a b-trial run
    (same seed); told its budget, the engine exploits at the end, so a shorter job differs."""
    long = search_quality.run_async("branin", 3, 12, 2, "bayesian", budget=False)
    short = search_quality.run_async("branin", 3, 8, 2, "bayesian", budget=False)
    assert long[:8] == short
    aware = search_quality.run_async("branin", 3, 8, 2, "bayesian")
    assert aware[:5] == short[:5] and aware != short


def test_a_budget_aware_method_is_read_from_its_own_job_at_each_budget() -> None:
    """The ratio at budget 1 comes from the 1-trial job, not from the longer job's first trial."""
    opt = problems.optimum("branin")
    values = {"branin": {"random": {0: [opt + 2.0, opt + 2.0], 1: [opt + 4.0, opt + 4.0]},
                         "hydra_vertex": {0: [opt + 2.0, opt + 2.0], 1: [opt + 4.0, opt + 4.0]}}}
    short = {"branin": {"hydra_vertex": {1: {0: [opt + 0.2], 1: [opt + 0.4]}}}}
    out = search_quality.summarize(values, budgets=(1, 2), short=short)["branin"]
    assert out["hydra_vertex"]["regret_ratio_vs_random_at"]["1"] == pytest.approx(0.1, rel=2e-2)
    assert out["hydra_vertex"]["regret_ratio_vs_random_at"]["2"] == 1.0


def _fake(opt: float) -> dict[str, dict[str, dict[int, list[float]]]]:
    return {
        "branin": {
            "random": {0: [opt + 2.0, opt + 2.0], 1: [opt + 4.0, opt + 4.0]},
            "tpe_sequential": {0: [opt + 1.0, opt + 1.0], 1: [opt + 1.0, opt + 1.0]},
            "sync_batch": {},
            "hydra_vertex": {0: [opt + 3.5, opt + 0.2], 1: [opt + 0.4, opt + 0.4]},
        }
    }


def test_summary_ratios_are_paired_against_random_at_each_budget() -> None:
    opt = problems.optimum("branin")
    out = search_quality.summarize(_fake(opt), budgets=(1, 2))["branin"]
    assert out["random"]["regret_ratio_vs_random_at"] == {"1": 1.0, "2": 1.0}
    hv = out["hydra_vertex"]
    assert hv["regret_ratio_vs_random_at"]["1"] == pytest.approx((1.75 + 0.1) / 2, rel=2e-2)
    assert hv["regret_ratio_vs_random_at"]["2"] == pytest.approx(0.1, rel=2e-2)
    assert hv["regret_ratio_vs_random"] == hv["regret_ratio_vs_random_at"]["2"]
    assert out["tpe_sequential"]["regret_ratio_vs_random"] == pytest.approx(0.375, rel=1e-2)
    assert hv["trials_to_target"] == 1.5  # median of 2 and 1
    for b in ("1", "2"):
        lo, hi = hv["regret_ratio_ci95_at"][b]
        assert lo <= hv["regret_ratio_vs_random_at"][b] <= hi
    lo, hi = hv["log_ratio_ci95"]
    assert lo <= hv["log_ratio_mean"] <= hi
    assert "sync_batch" not in out


def test_log_efficiency_counts_how_many_times_fewer_trials() -> None:
    """Random's median best after 4 trials is 2; a method there after 1 trial scores ln(4)."""
    runs = {
        "random": {s: [5.0, 4.0, 3.0, 2.0] for s in range(3)},
        "fast": {s: [2.0, 2.0, 2.0, 2.0] for s in range(3)},
        "never": {s: [9.0, 9.0, 9.0, 9.0] for s in range(3)},
    }
    out = search_quality.summarize({"branin": runs}, budgets=(2, 4))["branin"]
    assert out["random"]["log_efficiency_vs_random_at"] == {"2": 0.0, "4": 0.0}
    assert out["fast"]["log_efficiency_vs_random_at"]["4"] == pytest.approx(math.log(4))
    assert out["fast"]["log_efficiency_vs_random_at"]["2"] == pytest.approx(math.log(2))
    # never reached within the 4 trials: counted as 5, an upper bound
    assert out["never"]["log_efficiency_vs_random_at"]["4"] == pytest.approx(math.log(4 / 5))
    lo, hi = out["fast"]["log_efficiency_ci95_at"]["4"]
    assert lo <= math.log(4) <= hi


def test_targets_read_every_budget() -> None:
    import run

    def method(ratio: float) -> dict[str, object]:
        return {"regret_ratio_vs_random_at": {"10": ratio, "20": ratio, "50": ratio}}

    sq = {
        "branin": {"hydra_vertex": method(0.05), "sync_batch": method(0.5),
                   "tpe_sequential": method(0.3), "ask_ms_at_50": 60.0},
        "hartmann6": {"hydra_vertex": method(0.7), "sync_batch": method(0.6),
                      "tpe_sequential": method(0.3)},
        "digits": {"hydra_vertex": method(0.4), "sync_batch": method(0.5),
                   "tpe_sequential": method(0.3)},
    }  # fmt: skip
    t = run.search_targets(sq)
    assert t["branin_regret_ratio_at_20"]["met"] and t["branin_regret_ratio_at_50"]["met"]
    assert not t["hartmann6_regret_ratio_at_20"]["met"]
    assert t["digits_no_worse_than_tpe_sequential"] == {"worse_at": [10, 20, 50], "met": False}
    assert t["no_worse_than_sync_batch"]["worse_on"] == ["hartmann6@10", "hartmann6@20",
                                                         "hartmann6@50"]  # fmt: skip
    assert t["ask_ms_at_50"]["met"]


def test_committed_results_hold_the_small_budget_figures() -> None:
    """bench/results.json (a full run) carries every figure the README quotes."""
    results = json.loads((BENCH / "results.json").read_text())
    sq = results["search_quality"]
    for problem in ("branin", "hartmann6", "ackley5", "digits"):
        for method in search_quality.METHODS:
            x = sq[problem][method]
            assert set(x["regret_ratio_vs_random_at"]) == {"10", "20", "50"}
            assert x["regret_ratio_vs_random"] == x["regret_ratio_vs_random_at"]["50"]
            assert set(x["log_efficiency_vs_random_at"]) == {"10", "20", "50"}
            assert set(x["regret_ratio_ci95_at"]) == set(x["log_efficiency_ci95_at"])
        assert sq[problem]["ask_ms_at_50"] > 0
    for key in (
        "branin_regret_ratio_at_20",
        "hartmann6_regret_ratio_at_20",
        "branin_regret_ratio_at_50",
        "hartmann6_regret_ratio_at_50",
        "digits_no_worse_than_tpe_sequential",
        "no_worse_than_sync_batch",
        "ask_ms_at_50",
    ):
        assert "met" in results["targets"][key]


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
    # interpreters as results.json shows them: no path of the machine that ran the bench
    assert out["install"].startswith("regular") and out["python"].startswith("<tmp>/")
    assert out["python"].endswith("/install/venv/bin/python")
    assert out["editable"]["install"].startswith("editable")
    assert out["editable"]["python"] == processes.shown(sys.executable)


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
