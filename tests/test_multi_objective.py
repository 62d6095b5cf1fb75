"""Several objectives: the search space's list forms, the Pareto front, the ``select`` rule, and
Hydra's own multi-objective example tuned by ``hydra-vertex run --local`` (slow)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_vertex.errors import JobFileError, ReportingError, SearchSpaceError, SettingError
from hydra_vertex.pareto import Select, pareto_front
from hydra_vertex.reporting import objectives_from_return
from hydra_vertex.search_space import SearchSpace, from_mapping
from hydra_vertex.trials import TrialResult

EXAMPLE = Path(__file__).parent / "apps" / "optuna_multi_objective"
CLI = Path(sys.executable).with_name("hydra-vertex")
PARAMS = {"x": "interval(0, 5)"}


def _trial(tid: str, values: tuple[float, ...] | None, state: str = "SUCCEEDED") -> TrialResult:
    return TrialResult(
        id=tid, state=state, parameters={}, value=values[0] if values else None, values=values
    )


def _front_by_definition(
    trials: list[TrialResult], minimize: list[bool]
) -> set[str]:
    """The front straight from the definition: a succeeded trial that no succeeded trial beats
    in one objective without losing in another."""
    sign = [1.0 if m else -1.0 for m in minimize]
    done = [t for t in trials if t.state == "SUCCEEDED" and t.values is not None]
    out = set()
    for t in done:
        a = [s * v for s, v in zip(sign, t.values or (), strict=True)]
        beaten = False
        for o in done:
            b = [s * v for s, v in zip(sign, o.values or (), strict=True)]
            if all(y <= x for x, y in zip(a, b, strict=True)) and any(
                y < x for x, y in zip(a, b, strict=True)
            ):
                beaten = True
        if not beaten:
            out.add(t.id)
    return out


# -- the search space ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metric", "direction", "objectives"),
    [
        pytest.param(["loss", "acc"], ["minimize", "maximize"],
                     (("loss", "minimize"), ("acc", "maximize")), id="named"),
        pytest.param(None, ["minimize", "MINIMIZE"],
                     (("objective_0", "minimize"), ("objective_1", "minimize")), id="positional"),
        pytest.param(["loss"], ["maximize"], (("loss", "maximize"),), id="lists-of-one"),
        pytest.param("loss", "minimize", (("loss", "minimize"),), id="one"),
    ],
)
def test_metric_and_direction_lists(metric: Any, direction: Any, objectives: Any) -> None:
    space = from_mapping({"metric": metric, "direction": direction, "params": PARAMS})
    assert space.objectives == objectives
    assert space.multi_objective == (len(objectives) > 1)
    # the pipeline's hand-over and the shim's JSON read back to the same space
    assert from_mapping(space.to_mapping()) == space
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space


@pytest.mark.parametrize(
    ("metric", "direction", "message"),
    [
        pytest.param(["a", "b"], ["minimize"], "must list as many entries", id="fewer-directions"),
        pytest.param("a", ["minimize", "minimize"], "must list as many", id="one-metric-two-dirs"),
        pytest.param(["a", "a"], ["minimize", "minimize"], "appear more than once", id="twice"),
        pytest.param(["a", "b"], ["minimize", "up"], "'direction' must be one of", id="bad-dir"),
        pytest.param(["a", "b c"], ["minimize", "minimize"], "without whitespace", id="space"),
    ],
)
def test_bad_metric_lists(metric: Any, direction: Any, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        from_mapping({"metric": metric, "direction": direction, "params": PARAMS}, source="s.yaml")


def test_two_metrics_round_trip_through_the_study_spec() -> None:
    space = from_mapping(
        {"metric": ["loss", "acc"], "direction": ["minimize", "maximize"], "params": PARAMS}
    )
    spec = space.to_study_spec()
    assert [(m.metric_id, m.goal.name) for m in spec.metrics] == [
        ("loss", "MINIMIZE"), ("acc", "MAXIMIZE"),
    ]
    assert SearchSpace.from_study_spec(spec) == space


# -- the task function's return value ------------------------------------------------------------
@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        pytest.param((1, 2.5), [1.0, 2.5], id="tuple"),
        pytest.param([3, 4], [3.0, 4.0], id="list"),
        pytest.param({"b": 2, "a": 1, "extra": "x"}, [1.0, 2.0], id="mapping-by-name"),
    ],
)
def test_objectives_from_return(returned: object, expected: list[float]) -> None:
    assert objectives_from_return(returned, ["a", "b"]) == expected


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        pytest.param((1, 2, 3), "returned 3 value", id="too-many"),
        pytest.param(1.0, "return a tuple or list", id="a-number"),
        pytest.param({"a": 1}, "without the key 'b'", id="a-key-missing"),
        pytest.param((1, float("nan")), "objective 'b' is nan", id="nan"),
    ],
)
def test_objectives_from_return_errors(returned: object, message: str) -> None:
    with pytest.raises(ReportingError, match=message):
        objectives_from_return(returned, ["a", "b"])


# -- the Pareto front ----------------------------------------------------------------------------
def test_the_front_skips_infeasible_trials_and_keeps_ties() -> None:
    trials = [
        _trial("1", (1.0, 5.0)),
        _trial("2", (2.0, 2.0)),
        _trial("3", (2.0, 2.0)),  # equal to 2: neither dominates the other
        _trial("4", (3.0, 3.0)),  # dominated by 2
        _trial("5", (0.0, 0.0), state="INFEASIBLE"),  # would dominate all, takes no part
        _trial("6", (5.0, 1.0)),
    ]
    front = pareto_front(trials, [True, True])
    assert [t.id for t in front] == ["1", "2", "3", "6"]


def test_the_front_follows_each_goal() -> None:
    trials = [_trial("1", (1.0, 1.0)), _trial("2", (1.0, 2.0)), _trial("3", (0.5, 0.5))]
    # minimize the first, maximize the second: 2 beats 1; 3 is best in the first
    assert [t.id for t in pareto_front(trials, [True, False])] == ["2", "3"]


def test_the_front_matches_its_definition_on_a_grid() -> None:
    # a 3x3 grid of every order of values, with duplicates: the front by definition
    trials = [
        _trial(str(i), (float(a), float(b)))
        for i, (a, b) in enumerate(itertools.product([0, 1, 1, 2], [2, 0, 1]), start=1)
    ]
    for minimize in ([True, True], [True, False], [False, False]):
        front = {t.id for t in pareto_front(trials, minimize)}
        assert front == _front_by_definition(trials, minimize)


# -- the select rule ------------------------------------------------------------------------------
OBJECTIVES = [("loss", "minimize"), ("acc", "maximize")]
FRONT = [_trial("1", (0.1, 0.5)), _trial("2", (0.3, 0.9)), _trial("3", (0.2, 0.7))]


@pytest.mark.parametrize(
    ("rule", "winner"),
    [
        pytest.param({}, "1", id="default-first-metric"),
        pytest.param({"metric": "acc"}, "2", id="metric-maximized"),
        pytest.param({"weights": {"loss": 1, "acc": -0.2}}, "1", id="weights"),
        pytest.param({"weights": {"loss": 1, "acc": -1}}, "2", id="weights-favour-acc"),
        pytest.param({"weights": {"acc": 0}}, "1", id="tie-to-smaller-id"),
    ],
)
def test_select_picks_from_the_front(rule: dict[str, Any], winner: str) -> None:
    assert Select.from_dict(rule, ["loss", "acc"]).choose(FRONT, OBJECTIVES).id == winner


@pytest.mark.parametrize(
    ("rule", "field", "rule_text"),
    [
        pytest.param({"metric": "f1"}, "metric", "one of the study's metrics", id="unknown"),
        pytest.param({"metric": "acc", "weights": {"acc": 1}}, "", "exactly one", id="both"),
        pytest.param({"weights": {"f1": 1}}, "weights.f1", "names no metric", id="w-unknown"),
        pytest.param({"weights": {"acc": "x"}}, "weights.acc", "finite number", id="w-text"),
        pytest.param({"weights": {}}, "weights", "non-empty", id="w-empty"),
        pytest.param({"best": "acc"}, "best", "not a select key", id="key"),
        pytest.param("acc", "", "must be a mapping", id="not-a-mapping"),
    ],
)
def test_bad_select(rule: Any, field: str, rule_text: str) -> None:
    with pytest.raises(SettingError) as info:
        Select.from_dict(rule, ["loss", "acc"])
    assert info.value.field == field and rule_text in info.value.rule


def test_a_bad_select_in_the_job_file_is_one_line_naming_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load((EXAMPLE / "job.yaml").read_text())
    data["app"]["source"] = str(EXAMPLE)
    data["search_space"] = str(EXAMPLE / "multi-objective-conf" / "config.yaml")
    data["select"] = {"metric": "latency"}
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [str(CLI), "run", "--local", str(job)], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**os.environ, "HYDRA_VERTEX_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"hydra-vertex run: error: {job}: 'select.metric' must be one of the study's metrics "
        f"['objective_0', 'objective_1'], got 'latency' (see docs/job-file.md)"
    ]


def test_select_needs_several_metrics(tmp_path: Path) -> None:
    from hydra_vertex import jobfile
    from hydra_vertex.local_run import load_space

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"metric": "loss", "direction": "minimize", "params": PARAMS}))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "name": "one", "app": {"command": ["python", "app.py"]}, "search_space": "space.yaml",
        "select": {"metric": "loss"},
    }))
    with pytest.raises(JobFileError, match=r"'select' picks a trial of a Pareto front"):
        load_space(jobfile.load(job))


# -- Hydra's own example, tuned as a user tunes it --------------------------------------------------
@pytest.mark.slow
def test_hydra_multi_objective_example_runs_local(tmp_path: Path) -> None:
    """``hydra-vertex run --local`` on Hydra's example (unchanged; 6 trials, 2 at a time): the
    summary's Pareto front is the front of its succeeded trials, and the retrained trial is the
    front's smallest objective_0 + objective_1 (the job file's select)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_")}
    env.update(
        HYDRA_VERTEX_IMAGES=str(tmp_path / "images"),
        HYDRA_VERTEX_CACHE_DIR=str(tmp_path / "cache"),
        HYDRA_VERTEX_ENVS=os.environ["HYDRA_VERTEX_ENVS"],
        HYDRA_VERTEX_GPUS="",
    )
    done = subprocess.run(
        [str(CLI), "run", "--local", str(EXAMPLE / "job.yaml"), "--output", "SUMMARY.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "SUMMARY.json").read_text())
    assert summary["status"] == "succeeded"
    assert summary["metrics"] == ["objective_0", "objective_1"]
    assert summary["directions"] == ["minimize", "minimize"]
    trials = summary["trials"]
    assert len(trials) == 6
    succeeded = [t for t in trials if t["state"] == "SUCCEEDED"]
    assert succeeded
    for t in succeeded:  # Binh and Korn, computed here from the trial's parameters
        x, y = t["parameters"]["x"], t["parameters"]["y"]
        assert t["values"] == pytest.approx([4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2])
    results = [
        _trial(t["id"], tuple(t["values"]) if t["values"] else None, t["state"]) for t in trials
    ]
    front = set(summary["pareto_trial_ids"])
    assert front == _front_by_definition(results, [True, True])  # non-dominated and complete
    on_front = [t for t in succeeded if t["id"] in front]
    chosen = min(on_front, key=lambda t: (sum(t["values"]), int(t["id"])))
    assert summary["best_trial_id"] == chosen["id"]
    assert summary["best_values"] == chosen["values"]
    assert summary["best_value"] == chosen["values"][0]
    assert summary["select"] == {"weights": {"objective_0": 1.0, "objective_1": 1.0}}
    report = Path(summary["report"]).read_text()
    assert 'id="pareto"' in report


# -- the console and the report show the front --------------------------------------------------
def _final(loss: float, acc: float) -> dict[str, Any]:
    return {"metrics": [{"metricId": "loss", "value": loss}, {"metricId": "acc", "value": acc}]}


def test_the_console_shows_the_pareto_front(tmp_path: Path) -> None:
    from hydra_vertex.emulator import console
    from hydra_vertex.emulator.store import Store

    s = Store(tmp_path / "state")
    trials = [  # minimize loss, maximize acc: 2 and 3 are the front, 1 (tied loss) and 4 are not
        ("1", 0.2, 0.5), ("2", 0.2, 0.8), ("3", 0.1, 0.6), ("4", 0.3, 0.7),
    ]
    s.put("hyperparameterTuningJobs", "9", {"internal": {}, "resource": {
        "name": "projects/p/locations/l/hyperparameterTuningJobs/9", "displayName": "mo-tuning",
        "state": "JOB_STATE_SUCCEEDED", "maxTrialCount": 5, "parallelTrialCount": 2,
        "studySpec": {"metrics": [{"metricId": "loss", "goal": "MINIMIZE"},
                                  {"metricId": "acc", "goal": "MAXIMIZE"}]},
        "trials": [
            {"id": i, "state": "SUCCEEDED", "parameters": [{"parameterId": "x", "value": float(i)}],
             "finalMeasurement": _final(loss, acc)} for i, loss, acc in trials
        ] + [{"id": "5", "state": "INFEASIBLE", "parameters": [{"parameterId": "x", "value": 5.0}],
              "infeasibleReason": "reported no metric 'acc'"}],
    }})
    html = console.render(s, "/console/hyperparameterTuningJobs/9", {})[2].decode()
    s.close()
    assert "minimize loss, maximize acc" in html
    assert 'id="pareto-front">Pareto front (loss, acc): trials 2, 3 ' in html
    assert 'id="best-trial">3<' in html  # the front's best loss (the default select)
    assert 'data-chart="pareto"' in html
    assert html.count('data-front="true"') == 2 * 2  # table cells and chart points


def test_the_report_draws_the_front_from_a_summary(tmp_path: Path) -> None:
    from hydra_vertex.report import load_summary, render

    trials = [
        {"id": "1", "state": "SUCCEEDED", "parameters": {"x": 1}, "value": 1.0,
         "values": [1.0, 4.0]},
        {"id": "2", "state": "SUCCEEDED", "parameters": {"x": 2}, "value": 2.0,
         "values": [2.0, 5.0]},
        {"id": "3", "state": "SUCCEEDED", "parameters": {"x": 3}, "value": 3.0,
         "values": [3.0, 1.0]},
        {"id": "4", "state": "INFEASIBLE", "parameters": {"x": 4}, "value": None,
         "values": None, "infeasible_reason": "reported no metric 'b'"},
    ]
    data = {
        "name": "mo", "metric": "a", "direction": "minimize", "status": "succeeded",
        "metrics": ["a", "b"], "directions": ["minimize", "minimize"],
        "pareto_trial_ids": ["1", "3"], "select": {"metric": "b"}, "best_trial_id": "3",
        "best_value": 3.0, "best_values": [3.0, 1.0], "trials": trials,
    }
    path = tmp_path / "SUMMARY.json"
    path.write_text(json.dumps(data))
    html = render(load_summary(path))
    svg = html[html.index('data-chart="pareto"'):]
    svg = svg[: svg.index("</svg>")]
    assert svg.count('data-front="true"') == 2 and svg.count('class="pt"') == 3
    assert 'data-trial="3" data-value="3.0" data-front="true" data-best="true"' in svg
    assert 'id="pareto-ids">1, 3<' in html
    assert "the Pareto front&#x27;s best b" in html
    assert "minimize a, minimize b" in html


@pytest.mark.slow
def test_the_sweeper_tunes_the_example_with_hydra_sweeper_vertex(tmp_path: Path) -> None:
    """``python multi-objective.py -m hydra/sweeper=vertex``: optimization_results.yaml lists the
    Pareto front as hydra-optuna-sweeper's ``solutions``; ``select`` picks the trial."""
    import shutil

    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_")}
    env.update(HYDRA_VERTEX_CACHE_DIR=str(tmp_path / "cache"), HYDRA_VERTEX_GPUS="")
    done = subprocess.run(
        [sys.executable, "multi-objective.py", "-m", "hydra/sweeper=vertex",
         "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
         "+hydra.sweeper.select.metric=objective_1"],
        cwd=app, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [sweep] = (app / "multirun").glob("*/*")
    summary = json.loads((sweep / "SUMMARY.json").read_text())
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = {t["id"]: t for t in summary["trials"]}
    front = summary["pareto_trial_ids"]
    assert [s["values"] for s in results["solutions"]] == [trials[i]["values"] for i in front]
    picked = min(front, key=lambda i: (trials[i]["values"][1], int(i)))
    assert summary["best_trial_id"] == picked
    assert results["best_params"] == trials[picked]["parameters"]
