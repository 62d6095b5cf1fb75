"""Best-trial selection on real ``aiplatform_v1`` job resources: goal, states, selection, ties."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud.aiplatform_v1.types import HyperparameterTuningJob, Measurement, StudySpec, Trial
from google.protobuf import struct_pb2

from hydra_vertex import trials
from hydra_vertex.errors import TuningError

Goal = StudySpec.MetricSpec.GoalType
Sel = StudySpec.MeasurementSelectionType


def meas(v: float, step: int = 0) -> Measurement:
    return Measurement(step_count=step, metrics=[Measurement.Metric(metric_id="loss", value=v)])


def trial(
    tid: str, state: Trial.State, final: float | None = None, inter: tuple[float, ...] = (),
    reason: str = "", lr: float = 0.1,
) -> Trial:
    t = Trial(
        id=tid, state=state, infeasible_reason=reason,
        parameters=[Trial.Parameter(parameter_id="lr", value=struct_pb2.Value(number_value=lr))],
        measurements=[meas(v, i) for i, v in enumerate(inter)],
    )
    if final is not None:
        t.final_measurement = meas(final, len(inter))
    return t


def job(ts: list[Trial], goal: Any = Goal.MINIMIZE, sel: Any = Sel.LAST_MEASUREMENT) -> HyperparameterTuningJob:
    spec = StudySpec(
        metrics=[StudySpec.MetricSpec(metric_id="loss", goal=goal)],
        parameters=[StudySpec.ParameterSpec(
            parameter_id="lr",
            double_value_spec=StudySpec.ParameterSpec.DoubleValueSpec(min_value=0.0, max_value=1.0),
        )],
        measurement_selection_type=sel,
    )
    return HyperparameterTuningJob(name="projects/p/locations/l/hyperparameterTuningJobs/1",
                                   display_name="demo", study_spec=spec, trials=ts)


S, INF = Trial.State.SUCCEEDED, Trial.State.INFEASIBLE


@pytest.mark.parametrize(
    ("ts", "goal", "sel", "winner"),
    [
        pytest.param([trial("1", S, 0.5), trial("2", S, 0.2), trial("3", S, 0.9)], Goal.MINIMIZE, Sel.LAST_MEASUREMENT, "2", id="minimize"),
        pytest.param([trial("1", S, 0.5), trial("2", S, 0.2), trial("3", S, 0.9)], Goal.MAXIMIZE, Sel.LAST_MEASUREMENT, "3", id="maximize"),
        pytest.param([trial("1", INF, reason="crash"), trial("2", S, 0.7)], Goal.MINIMIZE, Sel.LAST_MEASUREMENT, "2", id="skip-infeasible"),
        pytest.param([trial("1", S, 0.5, inter=(0.1,)), trial("2", S, 0.3)], Goal.MINIMIZE, Sel.LAST_MEASUREMENT, "2", id="last-ignores-intermediate"),
        pytest.param([trial("1", S, 0.5, inter=(0.1,)), trial("2", S, 0.3)], Goal.MINIMIZE, Sel.BEST_MEASUREMENT, "1", id="best-uses-intermediate"),
        pytest.param([trial("10", S, 0.3), trial("9", S, 0.3), trial("11", S, 0.3)], Goal.MINIMIZE, Sel.LAST_MEASUREMENT, "9", id="tie-smallest-id"),
        pytest.param([trial("1", S, float("nan")), trial("2", S, 0.8)], Goal.MINIMIZE, Sel.LAST_MEASUREMENT, "2", id="nan-never-wins"),
        pytest.param([trial("1", Trial.State.ACTIVE, 0.01), trial("2", S, 0.8)], Goal.MINIMIZE, Sel.LAST_MEASUREMENT, "2", id="active-skipped"),
    ],
)
def test_winner(ts: list[Trial], goal: Any, sel: Any, winner: str) -> None:
    results = trials.trial_results(job(ts, goal, sel))
    best = trials.select_best(results, minimize=goal == Goal.MINIMIZE)
    assert best.id == winner


def test_no_successful_trial_says_how_many_failed_and_why() -> None:
    ts = [trial("1", INF, reason="exit code 1\nTraceback..."), trial("2", INF, reason="exit code 1"),
          trial("3", INF, reason="no metric 'loss' reported")]
    results = trials.trial_results(job(ts))
    with pytest.raises(TuningError, match=r"no trial succeeded \(3 trials: 3 INFEASIBLE\)") as e:
        trials.select_best(results, minimize=True, job_name="demo")
    assert "2 x exit code 1" in str(e.value) and "1 x no metric 'loss' reported" in str(e.value)


def test_results_are_plain_data_in_id_order() -> None:
    results = trials.trial_results(job([trial("2", S, 0.2, lr=0.5), trial("1", INF, reason="x")]))
    assert [(r.id, r.state, r.value, r.parameters) for r in results] == [
        ("1", "INFEASIBLE", None, {"lr": 0.1}),
        ("2", "SUCCEEDED", 0.2, {"lr": 0.5}),
    ]


def test_best_trial_gives_typed_hydra_overrides() -> None:
    from hydra_vertex import search_space as ss

    space = ss.from_mapping({
        "metric": "loss", "direction": "minimize",
        "params": {"lr": "interval(0.0, 1.0)", "batch_size": "choice(32, 64, 256)",
                   "name": "choice('a, b=c [d]', plain)"},
    })

    def t(tid: str, value: float, bs: float, name: str) -> Trial:
        return Trial(
            id=tid, state=S, final_measurement=meas(value),
            parameters=[
                Trial.Parameter(parameter_id="lr", value=struct_pb2.Value(number_value=0.01)),
                Trial.Parameter(parameter_id="batch_size", value=struct_pb2.Value(number_value=bs)),
                Trial.Parameter(parameter_id="name", value=struct_pb2.Value(string_value=name)),
            ],
        )

    j = job([t("1", 0.4, 32.0, "plain"), t("2", 0.1, 256.0, "a, b=c [d]")])
    j.study_spec = space.to_study_spec()
    j.study_spec.metrics[0].metric_id = "loss"
    best = trials.best_trial(j, space)
    assert (best.trial_id, best.value) == ("2", 0.1)
    assert best.overrides[:2] == ["lr=0.01", "batch_size=256"]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(best.overrides)
    assert [o.value() for o in parsed] == [0.01, 256, "a, b=c [d]"]
    # Without the file, the space comes from the job's own StudySpec.
    assert trials.best_trial(j).overrides == best.overrides
