"""hydra-vertex benchmarks: search quality, trial overhead, scheduling efficiency and pipeline
overhead, each measured side by side with its baseline in the same run and reported as ratios.

    python bench/run.py [--quick] [--json OUT] [--only A,B1,B2,B3,C] [--seeds N]

A   search quality on a simulated clock (Branin, Hartmann-6, Ackley-5, a digits lookup table) at
    budgets of 10, 20 and 50 trials: random, tpe_sequential, sync_batch (hydra-optuna-sweeper's
    loop and sampler, 2 per batch), hydra_vertex (2 parallel) and hydra_vertex_p4 (4 parallel);
    and the time of one Bayesian ask at 50 trials.
B1  added overhead per trial: a no-op Hydra app through the emulator and the shim vs run directly,
    with hydra-vertex installed from a wheel (as in a trial image), and again editable.
B2  wall clock and worker utilization, hydra_vertex vs hydra-optuna-sweeper + joblib (n_jobs=2).
B3  the digits example: wall clock to reach a target validation error, both ways.
C   ``hydra-vertex run --local`` on the digits example vs its trials' work / parallelism + retrain.

The sweeper pins Optuna < 3, so it runs from its own virtual environment, created on first use
under ~/.cache/hydra-vertex-bench (see sweeper_env.py). ``--quick`` takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import processes
import search_quality
from sweeper_env import sweeper_python, versions

PROBLEMS = ["branin", "hartmann6", "ackley5", "digits"]
TARGETS = {
    "branin_regret_ratio_at_20": 0.2,
    "hartmann6_regret_ratio_at_20": 0.6,
    "branin_regret_ratio_at_50": 0.1,
    "hartmann6_regret_ratio_at_50": 0.3,
    "ask_ms_at_50": 100.0,
    "overhead_ms": 50.0,
    "utilization": 0.95,
    "wall_ratio": 0.8,
    "pipeline_ratio": 1.15,
}


def settings(quick: bool, seeds: int | None) -> dict[str, Any]:
    s = {
        "seeds": 6 if quick else 20,
        "trials": 50,
        "parallel": 2,
        "b1_trials": 20 if quick else 50,
        "b2_trials": 16 if quick else 40,
        "b2_median_seconds": 2.0,
        "b2_sigma": 0.75,
        "b3_trials": 16 if quick else 30,
        "b3_target": 0.02,
        "c_runs": 1 if quick else 3,
    }
    if seeds:
        s["seeds"] = seeds
    return s


def facts(sweeper_py: Path | None) -> dict[str, Any]:
    pkgs = ["hydra-vertex", "optuna", "hydra-core", "kfp", "google-cloud-aiplatform", "torch"]
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "versions": {},
    }
    for p in pkgs:
        try:
            out["versions"][p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out["versions"][p] = None
    if sweeper_py is not None:
        out["sweeper_env_versions"] = versions(sweeper_py)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds and trials (< 10 minutes)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--only", default="A,B1,B2,B3,C", help="comma-separated parts to run")
    ap.add_argument("--seeds", type=int, help="override the number of seeds of part A")
    args = ap.parse_args(argv)
    parts = {p.strip().upper() for p in args.only.split(",") if p.strip()}
    cfg = settings(args.quick, args.seeds)
    # Trials run with bytecode caches, as a trial container does; with PYTHONDONTWRITEBYTECODE
    # (set on some dev machines) every trial would compile hydra-vertex from source.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sweeper_py = sweeper_python() if parts & {"A", "B2", "B3"} else None
    seeds = list(range(cfg["seeds"]))
    result: dict[str, Any] = {"settings": cfg, "seeds": seeds, "machine": facts(sweeper_py)}
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hv-bench-") as tmp:
        work = Path(tmp)
        if "A" in parts:
            t = time.perf_counter()
            values, short = search_quality.collect(
                PROBLEMS, seeds, cfg["trials"], cfg["parallel"], sweeper_py
            )
            result["search_quality"] = search_quality.summarize(values, short=short)
            for prob, ms in search_quality.bench_asks(PROBLEMS, cfg["trials"]).items():
                result["search_quality"][prob]["ask_ms_at_50"] = ms["wall"]
                result["search_quality"][prob]["ask_cpu_ms_at_50"] = ms["cpu"]
            timings["A"] = time.perf_counter() - t
        # hydra-vertex as a trial image has it (a wheel, bytecode compiled), for B1 and B2
        regular = processes.regular_install(work / "install") if parts & {"B1", "B2"} else None
        if "B1" in parts:
            t = time.perf_counter()
            load = os.getloadavg()
            result["overhead_ms_per_trial"] = processes.overhead(
                cfg["b1_trials"], work / "b1", regular=regular
            )
            result["overhead_ms_per_trial"]["load_average"] = _loads(load)
            timings["B1"] = time.perf_counter() - t
        if "B2" in parts:
            assert sweeper_py is not None
            t = time.perf_counter()
            load = os.getloadavg()
            assert regular is not None
            sched = processes.scheduling(
                cfg["b2_trials"], work / "b2", sweeper_py, 0,
                cfg["b2_median_seconds"], cfg["b2_sigma"], python=regular,
            )  # fmt: skip
            result["scheduling"] = {
                "utilization": {m: sched[m]["utilization"] for m in ("hydra_vertex", "sync_batch")},
                "wall_ratio_vs_sync_batch": sched["wall_ratio_vs_sync_batch"],
                "details": sched,
                "load_average": _loads(load),
            }
            timings["B2"] = time.perf_counter() - t
        if "B3" in parts:
            assert sweeper_py is not None
            t = time.perf_counter()
            result["training"] = processes.training(
                cfg["b3_trials"], work / "b3", sweeper_py, 0, cfg["b3_target"]
            )
            timings["B3"] = time.perf_counter() - t
        if "C" in parts:
            import statistics

            import pipeline

            t = time.perf_counter()
            load = os.getloadavg()
            runs = [pipeline.run(work / f"c{i}") for i in range(cfg["c_runs"])]
            result["pipeline"] = {"runs": runs, "load_average": _loads(load)}
            result["pipeline_overhead_ratio"] = statistics.median(
                r["pipeline_overhead_ratio"] for r in runs
            )
            timings["C"] = time.perf_counter() - t
    result["timings_seconds"] = {**timings, "total": time.perf_counter() - started}
    result["targets"] = check_targets(result)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def _loads(start: tuple[float, float, float]) -> dict[str, list[float]]:
    """The 1/5/15-minute load averages when a part started and ended (the machine is shared)."""
    return {"start": [round(x, 2) for x in start], "end": [round(x, 2) for x in os.getloadavg()]}


def _load_note(part: dict[str, Any]) -> str:
    load = part.get("load_average")
    return f"load avg {load['start'][0]:.1f} -> {load['end'][0]:.1f}" if load else ""


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


def check_targets(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sq = r.get("search_quality")
    if sq:
        out.update(search_targets(sq))
    if "overhead_ms_per_trial" in r:
        v = r["overhead_ms_per_trial"]["added"]
        out["overhead_ms"] = {"value": v, "target": "<= 50", "met": v <= TARGETS["overhead_ms"]}
    if "scheduling" in r:
        u = r["scheduling"]["utilization"]["hydra_vertex"]
        w = r["scheduling"]["wall_ratio_vs_sync_batch"]
        out["utilization"] = {"value": u, "target": ">= 0.95", "met": u >= TARGETS["utilization"]}
        out["wall_ratio"] = {"value": w, "target": "<= 0.8", "met": w <= TARGETS["wall_ratio"]}
    if "pipeline_overhead_ratio" in r:
        v = r["pipeline_overhead_ratio"]
        out["pipeline_ratio"] = {
            "value": v,
            "target": "<= 1.15",
            "met": v <= TARGETS["pipeline_ratio"],
        }
    return out


def search_targets(sq: dict[str, Any]) -> dict[str, Any]:
    """The issue's search-quality targets, each with its measured value."""
    out: dict[str, Any] = {}

    def at(prob: str, method: str, budget: int) -> float:
        return float(sq[prob][method]["regret_ratio_vs_random_at"][str(budget)])

    for prob in ("branin", "hartmann6"):
        for budget in (20, 50):
            key = f"{prob}_regret_ratio_at_{budget}"
            if prob in sq and str(budget) in sq[prob]["hydra_vertex"]["regret_ratio_vs_random_at"]:
                v = at(prob, "hydra_vertex", budget)
                out[key] = {"value": v, "target": f"<= {TARGETS[key]}", "met": v <= TARGETS[key]}
    budgets = [b for b in search_quality.BUDGETS if all(
        str(b) in sq[p]["hydra_vertex"]["regret_ratio_vs_random_at"] for p in sq)]  # fmt: skip
    if "digits" in sq:
        hv, tpe = "hydra_vertex", "tpe_sequential"
        worse = [b for b in budgets if at("digits", hv, b) > at("digits", tpe, b)]
        out["digits_no_worse_than_tpe_sequential"] = {"worse_at": worse, "met": not worse}
    if all(sq[p].get("sync_batch") for p in sq):
        worse_on = [
            f"{p}@{b}"
            for p in sq
            for b in budgets
            if at(p, "hydra_vertex", b) > at(p, "sync_batch", b)
        ]
        out["no_worse_than_sync_batch"] = {"worse_on": worse_on, "met": not worse_on}
    asks = [sq[p]["ask_ms_at_50"] for p in sq if "ask_ms_at_50" in sq[p]]
    if asks:
        v = max(asks)
        out["ask_ms_at_50"] = {"value": v, "target": "<= 100", "met": v <= TARGETS["ask_ms_at_50"]}
    return out


def _f(v: Any, fmt: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, fmt) if isinstance(v, int | float) else str(v)


def print_table(r: dict[str, Any]) -> None:
    sq = r.get("search_quality")
    if sq:
        print(
            f"A. search quality ({r['settings']['trials']} trials, {len(r['seeds'])} paired seeds; "
            f"regret ratio vs random (median) and Vizier's log-efficiency vs random, by budget)"
        )
        budgets = search_quality.BUDGETS
        head = "".join(f"{'ratio@' + str(b):>10s}" for b in budgets)
        head += "".join(f"{'logeff@' + str(b):>10s}" for b in budgets)
        print(f"{'problem':10s} {'method':16s}{head} {'ask ms@50':>14s}")
        for prob, res in sq.items():
            for m in search_quality.METHODS:
                x = res.get(m)
                if not x:
                    continue
                cells = "".join(
                    f"{_f(x['regret_ratio_vs_random_at'].get(str(b))):>10s}" for b in budgets
                )
                cells += "".join(
                    f"{_f(x['log_efficiency_vs_random_at'].get(str(b)), '+.2f'):>10s}"
                    for b in budgets
                )
                ask = ""
                if m == "hydra_vertex" and "ask_ms_at_50" in res:
                    ask = f"{res['ask_ms_at_50']:.0f} ({res['ask_cpu_ms_at_50']:.0f} cpu)"
                print(f"{prob:10s} {m:16s}{cells} {ask:>14s}")
    o = r.get("overhead_ms_per_trial")
    if o:
        print(
            f"\nB1. overhead per trial ({o['trials']} no-op trials, 1 at a time; {_load_note(o)}; "
            f"a Bayesian ask {o['gp_ask_ms']:.0f} ms)"
        )
        for x in (o, o.get("editable")):
            if x:
                print(
                    f"  {x['install']:36s} direct {x['direct_ms']:.0f} ms, through emulator+shim "
                    f"{x['emulator_ms_per_trial']:.0f} ms -> added {x['added']:.0f} ms "
                    f"(trial span {x['trial_span_ms']:.0f} ms)"
                )
    s = r.get("scheduling")
    if s:
        d = s["details"]
        print(
            f"\nB2. scheduling ({d['trials']} trials, 2 workers, "
            f"sleeps sum {d['durations_sum']:.1f} s; {_load_note(s)})"
        )
        for m in ("hydra_vertex", "sync_batch"):
            x = d[m]
            print(
                f"  {m:13s} wall {x['wall']:6.1f} s  utilization {x['utilization']:.3f}  "
                f"(in span {x['utilization_in_span']:.3f}; useful work {x['work_fraction']:.3f})"
            )
        print(f"  wall ratio hydra_vertex / sync_batch: {s['wall_ratio_vs_sync_batch']:.3f}")
    t = r.get("training")
    if t:
        print(
            f"\nB3. digits (SVM C, gamma), {t['trials']} trials, target val_error <= "
            f"{t['target_val_error']}"
        )
        for m in ("hydra_vertex", "sync_batch"):
            x = t[m]
            print(
                f"  {m:13s} wall {x['wall']:6.1f} s  best {_f(x['best_value'], '.4f')}  "
                f"to target {_f(x['seconds_to_target'], '.1f')} s "
                f"({_f(x['trials_to_target'], 'd')} trials)"
            )
        print(f"  time-to-target ratio: {_f(t['time_to_target_ratio_vs_sync_batch'])}")
    if "pipeline_overhead_ratio" in r:
        p = r["pipeline"]["runs"][0]
        print(
            f"\nC. pipeline: run --local {p['wall']:.1f} s vs trials/parallel + retrain "
            f"{p['ideal_seconds']:.1f} s -> ratio {r['pipeline_overhead_ratio']:.3f} "
            f"(tuning job {p['tuning_job_seconds']:.1f} s; {_load_note(r['pipeline'])})"
        )
    tg = r.get("targets", {})
    if tg:
        print("\ntargets:")
        for k, v in tg.items():
            val = v.get("value", v.get("worse_on", v.get("worse_at")))
            print(
                f"  {k:36s} {_f(val):>10s} {v.get('target', ''):>8s}  "
                f"{'met' if v['met'] else 'MISSED'}"
            )
    print(f"\ntimings: {', '.join(f'{k} {v:.0f} s' for k, v in r['timings_seconds'].items())}")


if __name__ == "__main__":
    sys.exit(main())
