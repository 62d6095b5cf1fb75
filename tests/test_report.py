"""The study report: built from SUMMARY.json or from a tuning job (a real aiplatform_v1 proto, and
through the real client from the emulator); escaped, self-contained, one row per trial, the right
winner. The browser tests (tests/browser) look at the same pages in Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from hydra_vertex import report
from hydra_vertex.report_charts import (
    Axis,
    curves,
    history,
    importances,
    nice_ticks,
    parse_time,
    robust_range,
    slots,
    timeline,
)
from hydra_vertex.summary import Summary
from hydra_vertex.trials import TrialResult

CLI = Path(sys.executable).with_name("hydra-vertex")
EVIL = '<script>alert("x")</script>'


def _summary() -> Summary:
    trials = [
        TrialResult("1", "SUCCEEDED", {"model": "svm", "model.C": 1.0, "layers": 2}, 0.30),
        TrialResult("2", "SUCCEEDED", {"model": "sgd", "model.alpha": 1e-4, "layers": 3}, 0.12),
        TrialResult(
            "3", "INFEASIBLE", {"model": "svm", "model.C": 100.0, "layers": 1}, None,
            "trial crashed (exit 1); last log lines:\nValueError: " + EVIL,
        ),
        TrialResult("4", "SUCCEEDED", {"model": EVIL, "model.C": 10.0, "layers": 4}, 0.20),
        TrialResult("5", "ACTIVE", {"model": "svm", "model.C": 3.0, "layers": 2}, None),
    ]
    return Summary(
        name="demo", metric="val_loss", direction="minimize", status="succeeded",
        best_trial_id="2", best_value=0.12,
        best_overrides=["model=sgd", "model.alpha=0.0001", "layers=3", "+tag='a b'"],
        best_parameters={"model": "sgd", "model.alpha": 1e-4, "layers": 3},
        retrain_overrides=["epochs=10"], trials=trials, model_dir="/tmp/model",
        tuning_job="projects/p/locations/l/hyperparameterTuningJobs/1",
    )


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data


def _parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    return p


def test_one_row_per_trial_with_states_values_and_reasons() -> None:
    html = report.render(_summary())
    p = _parse(html)
    rows = [a for t, a in p.tags if t == "tr" and "data-trial" in a]
    assert [r["data-trial"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r["data-state"] for r in rows] == [
        "SUCCEEDED", "SUCCEEDED", "INFEASIBLE", "SUCCEEDED", "ACTIVE"]
    assert [r.get("class") for r in rows].count("best-row") == 1
    assert rows[1].get("class") == "best-row"
    assert "trial crashed (exit 1): ValueError:" in html
    assert 'id="best-trial">2<' in html and 'data-value="0.12"' in html


def test_the_winning_overrides_are_ready_to_paste() -> None:
    html = report.render(_summary())
    m = re.search(r'<pre class="paste" id="best-overrides">(.*?)</pre>', html)
    assert m is not None
    import shlex
    from html import unescape

    pasted = unescape(m.group(1))
    assert shlex.split(pasted) == ["model=sgd", "model.alpha=0.0001", "layers=3", "+tag='a b'"]
    assert 'id="retrain-overrides">epochs=10<' in html


def test_everything_is_escaped_and_nothing_is_loaded_from_elsewhere() -> None:
    html = report.render(_summary(), wandb_runs={"1": "https://wandb.ai/e/p/runs/abc",
                                                 "2": "javascript:alert(1)"})
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    p = _parse(html)
    urls = [a.get(k) for _, a in p.tags for k in ("src", "href") if a.get(k)]
    assert urls == ["https://wandb.ai/e/p/runs/abc"]  # the javascript: link was dropped
    assert not any(k.startswith("on") for _, a in p.tags for k in a)  # no inline handlers
    assert "style" not in {k for _, a in p.tags for k in a}  # no style attributes (CSP)


def test_the_csp_allows_exactly_the_page_style() -> None:
    html = report.render(_summary())
    p = _parse(html)
    csp = next(a["content"] for t, a in p.tags if t == "meta" and a.get("http-equiv"))
    digest = base64.b64encode(hashlib.sha256(p.style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in (csp or "")
    assert "default-src 'none'" in (csp or "") and "script-src" not in (csp or "")


def test_charts_have_a_point_per_trial_and_the_best_marked() -> None:
    html = report.render(_summary())
    p = _parse(html)
    charts = [a["data-chart"] for t, a in p.tags if t == "svg"]
    assert charts[:3] == ["history", "parallel", "importance"]  # no curves, no times: left out
    slices = [a["data-param"] for t, a in p.tags if t == "svg" and a.get("data-chart") == "slice"]
    assert slices == ["model", "model.C", "layers", "model.alpha"]
    circles = [a for t, a in p.tags if t == "circle"]
    history_points = [a for a in circles if a.get("class") == "pt"]
    assert {a["data-trial"] for a in history_points} == {"1", "2", "4"}
    assert all(a.get("data-best") == "true" for a in circles if a["data-trial"] == "2")
    failed = [a["data-trial"] for t, a in p.tags if a.get("class") == "pt-failed"]
    assert failed == ["3", "5"]
    best_line = next(a for t, a in p.tags if a.get("class") == "best-line" and "d" in a)
    assert float(best_line["data-best-value"] or "nan") == 0.12
    lines = [a for t, a in p.tags if (a.get("class") or "").startswith("pc-line")]
    assert [a["data-trial"] for a in lines][-1] == "2"  # the best drawn last, on top
    assert lines[-1]["class"] == "pc-line best"
    # a conditional parameter a trial lacks puts it on that axis's n/a band: one unbroken line
    # through every axis, to the objective
    columns = 5  # model, model.C, layers, model.alpha, val_loss
    for line in lines:
        d = line["d"] or ""
        assert d.count("M") == 1 and d.count("L") == columns - 1 and line["data-points"] == str(columns)
    sgd = next(a for a in lines if a["data-trial"] == "2")
    assert sgd["data-na"] == "model.C" and sgd["data-best"] == "true"
    foot = 320.0  # the plot's bottom: where the n/a band is
    assert float((sgd["d"] or "").split("L")[1].split(",")[1]) == foot  # model.C: n/a
    assert [a.get("class") for t, a in p.tags if a.get("class") == "na-rule"] == ["na-rule"] * 2


def test_no_successful_trial_still_renders_the_table_and_says_so() -> None:
    s = _summary()
    s.trials = [t for t in s.trials if t.state != "SUCCEEDED"]
    s.best_trial_id = s.best_value = None
    s.status, s.error = "failed", "no trial succeeded"
    html = report.render(s)
    assert 'id="no-best"' in html and "nothing to plot" in html
    assert html.count("<tr data-trial=") == 2 and 'id="error">no trial succeeded<' in html


def test_importance_ranks_the_parameter_that_drives_the_objective_first() -> None:
    trials = [
        TrialResult(str(i), "SUCCEEDED", {"lr": 10.0 ** -(i % 5), "noise": (i * 7) % 3}, float(i % 5))
        for i in range(1, 31)
    ]
    imp = importances(trials)
    assert imp["lr"] > 0.8 > imp["noise"]
    assert abs(sum(imp.values()) - 1.0) < 1e-9


def test_axes_pick_log_and_categorical_scales() -> None:
    assert Axis.of([1e-5, 1e-1]).kind == "log"
    assert Axis.of([0.1, 0.5]).kind == "linear"
    assert Axis.of(["b", "a"]).cats == ["a", "b"]
    assert Axis.of([None, 3, 3]).pos(3) == 0.5
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


@pytest.mark.parametrize(
    ("values", "labels"),
    [
        pytest.param([2, 3, 5, 6], ["2", "3", "4", "5", "6"], id="a few integers"),
        pytest.param([1, 2], ["1", "2"], id="a span of one: no 1.2, 1.4, ..."),
        pytest.param([5, 60], ["20", "40", "60"], id="integers over a range"),
        pytest.param([32.0, 64.0, 128.0], ["40", "60", "80", "100", "120"], id="integral floats (a DISCRETE choice)"),
        pytest.param([16, 1024], ["100", "1,000"], id="integers on a log scale"),
        pytest.param([3, 3], ["2", "3", "4"], id="one value"),
    ],
)
def test_integer_parameters_get_whole_number_ticks(values: list[Any], labels: list[str]) -> None:
    assert [label for _, label in Axis.of(values).ticks()] == labels


def test_a_far_outlier_is_clipped_with_a_marker_and_does_not_flatten_the_rest() -> None:
    values = [0.10, 0.12, 0.11, 0.13, 0.09, 0.14, 250.0]
    trials = [TrialResult(str(i), "SUCCEEDED", {"x": float(i)}, v) for i, v in enumerate(values, 1)]
    assert robust_range(values) == (0.09, 0.14)
    assert robust_range(values[:-1]) is None  # nothing far out: nothing clipped
    p = _parse(history(trials, "loss", True, "5"))
    clipped = [a for t, a in p.tags if a.get("class") == "pt-clipped"]
    assert [(a["data-trial"], a["data-clipped"]) for a in clipped] == [("7", "high")]
    ys = [float(a["cy"] or 0) for t, a in p.tags if t == "circle"]
    assert max(ys) - min(ys) > 150  # the other six spread over the plot (270 px high)


def test_curves_draw_each_trials_intermediate_values_and_mark_early_stops() -> None:
    trials = [
        TrialResult("1", "SUCCEEDED", {"x": 1.0}, 0.5, intermediate=((0, 2.0), (1, 1.0), (2, 0.5))),
        TrialResult("2", "SUCCEEDED", {"x": 2.0}, 1.5, intermediate=((0, 3.0), (1, 1.5)), stopped_early=True),
        TrialResult("3", "INFEASIBLE", {"x": 3.0}, None, "crashed", intermediate=((0, 4.0),)),
        TrialResult("4", "SUCCEEDED", {"x": 4.0}, 0.7),
    ]
    p = _parse(curves(trials, "loss", True, "1") or "")
    paths = {a["data-trial"]: a for t, a in p.tags if (a.get("class") or "").startswith("curve")}
    assert {k: v["data-steps"] for k, v in paths.items()} == {"1": "3", "2": "2", "3": "1"}
    assert paths["1"]["class"] == "curve best"
    assert [a["data-trial"] for t, a in p.tags if a.get("class") == "stop-mark"] == ["2"]
    assert curves(trials[3:], "loss", True, None) is None  # nothing reported along the way
    assert curves(trials[2:], "loss", True, None) is None  # one value each: no curve


def test_the_timeline_puts_parallel_trials_on_their_own_slots() -> None:
    def t(tid: str, start: str, end: str | None, state: str = "SUCCEEDED") -> TrialResult:
        return TrialResult(tid, state, {}, 1.0, start_time=f"2026-05-01T10:00:{start}Z",
                           end_time=f"2026-05-01T10:00:{end}.123456789Z" if end else None)

    trials = [t("1", "00", "10"), t("2", "01", "05"), t("3", "06", "12"), t("4", "11", None, "ACTIVE"),
              TrialResult("5", "REQUESTED", {}, None)]
    now = parse_time("2026-05-01T10:00:20Z")
    assert now is not None
    placed = {trial.id: (slot, s0, round(s1, 1)) for trial, slot, s0, s1 in slots(trials, now)}
    assert placed == {"1": (0, 0.0, 10.1), "2": (1, 1.0, 5.1), "3": (1, 6.0, 12.1), "4": (0, 11.0, 20.0)}
    p = _parse(timeline(trials, "3", now) or "")
    bars = {a["data-trial"]: a for t, a in p.tags if (a.get("class") or "").startswith("tl-bar")}
    assert bars["3"]["class"] == "tl-bar SUCCEEDED best" and bars["4"]["class"] == "tl-bar running"
    assert bars["2"]["data-slot"] == "2"
    assert timeline([TrialResult("1", "REQUESTED", {}, None)], None) is None


def test_the_retrains_metric_and_model_are_shown() -> None:
    s = _summary()
    s.retrain_job, s.retrain_value = "projects/p/locations/l/customJobs/9", 0.0875
    html = report.render(s)
    assert 'id="retrain-value" data-value="0.0875">0.0875<' in html
    assert 'id="model-location">/tmp/model<' in html
    s.retrain_value = None
    assert "The retrain reported no val_loss" in report.render(s)


def test_load_summary_round_trips_the_written_file(tmp_path: Path) -> None:
    s = _summary()
    s.write(tmp_path / "SUMMARY.json")
    back = report.load_summary(tmp_path / "SUMMARY.json")
    assert back == s
    with pytest.raises(report.UsageError, match="does not exist"):
        report.load_summary(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(report.UsageError, match=r"not a SUMMARY\.json"):
        report.load_summary(tmp_path / "bad.json")


def test_trials_stopped_early_are_marked_and_what_they_saved_is_totalled(tmp_path: Path) -> None:
    from dataclasses import replace

    s = _summary()
    why = "best 3.0 at step 1 worse than median 1.5"
    s.trials[0] = replace(s.trials[0], stopped_early=True, stop_reason=why, saved_steps=39,
                          saved_seconds=3.9, devices=("0", "1"))
    s.trials[3] = replace(s.trials[3], stopped_early=True, stop_reason=why, saved_steps=20,
                          saved_seconds=2.05, devices=("2", "3"))
    data = s.to_dict()
    assert data["early_stopping"] == {"stopped_trials": 2, "saved_steps": 59, "saved_seconds": 5.95}
    assert data["trials"][0]["stopped_early"] is True and data["trials"][0]["devices"] == ["0", "1"]
    assert data["trials"][1]["stopped_early"] is False and data["trials"][1]["devices"] is None
    s.write(tmp_path / "SUMMARY.json")
    assert report.load_summary(tmp_path / "SUMMARY.json") == s
    html = report.render(s)
    rows = [a for t, a in _parse(html).tags if t == "tr" and "data-trial" in a]
    assert [r["data-trial"] for r in rows if r.get("data-stopped-early") == "true"] == ["1", "4"]
    assert f'<span class="badge stopped" data-stopped="true" title="{why}">stopped early</span>' in html
    assert "<dt>stopped early</dt><dd>2 trials, saving about 59 steps and 6.0 s</dd>" in html


def _tuning_job(name: str) -> Any:
    from google.cloud.aiplatform_v1.types import HyperparameterTuningJob, Measurement, StudySpec
    from google.cloud.aiplatform_v1.types import Trial as T

    P = StudySpec.ParameterSpec
    spec = StudySpec(
        metrics=[StudySpec.MetricSpec(metric_id="acc", goal=StudySpec.MetricSpec.GoalType.MAXIMIZE)],
        parameters=[
            P(parameter_id="optimizer.lr", double_value_spec=P.DoubleValueSpec(min_value=1e-4, max_value=1e-1),
              scale_type=P.ScaleType.UNIT_LOG_SCALE),
            P(parameter_id="width", integer_value_spec=P.IntegerValueSpec(min_value=8, max_value=64),
              scale_type=P.ScaleType.UNIT_LINEAR_SCALE),
        ],
    )

    def trial(tid: str, lr: float, width: float, acc: float | None) -> T:
        t = T(id=tid, state=T.State.SUCCEEDED if acc is not None else T.State.INFEASIBLE,
              parameters=[T.Parameter(parameter_id="optimizer.lr", value=lr),
                          T.Parameter(parameter_id="width", value=width)])
        if acc is not None:
            t.final_measurement = Measurement(metrics=[Measurement.Metric(metric_id="acc", value=acc)])
        else:
            t.infeasible_reason = "no metric reported"
        return t

    return HyperparameterTuningJob(
        name=name, display_name="mnist-tuning", study_spec=spec, max_trial_count=3,
        parallel_trial_count=1, state=4,  # JOB_STATE_SUCCEEDED
        trials=[trial("1", 0.01, 16.0, 0.91), trial("2", 0.001, 32.0, 0.95), trial("3", 0.1, 8.0, None)],
    )


def test_summary_from_a_tuning_job_types_the_parameters_and_finds_the_winner() -> None:
    s = report.summary_from_tuning_job(_tuning_job("projects/p/locations/us-central1/hyperparameterTuningJobs/7"))
    assert (s.name, s.metric, s.direction, s.status) == ("mnist", "acc", "maximize", "succeeded")
    assert s.best_trial_id == "2" and s.best_value == pytest.approx(0.95)
    assert s.best_overrides == ["optimizer.lr=0.001", "width=32"]
    assert s.best_parameters == {"optimizer.lr": 0.001, "width": 32}
    assert [t.state for t in s.trials] == ["SUCCEEDED", "SUCCEEDED", "INFEASIBLE"]
    assert s.trials[2].infeasible_reason == "no metric reported"


def test_the_report_command_reads_a_summary_file(tmp_path: Path) -> None:
    _summary().write(tmp_path / "SUMMARY.json")
    done = subprocess.run([str(CLI), "report", "SUMMARY.json", "-o", "out/report.html"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote out/report.html"
    assert (tmp_path / "out" / "report.html").read_text().count("<tr data-trial=") == 5
    bad = subprocess.run([str(CLI), "report", "missing.json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'missing.json' does not exist" in bad.stderr
    bad = subprocess.run([str(CLI), "report", "projects/p/locations/l/customJobs/1"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "hyperparameterTuningJobs/ID" in bad.stderr


def test_the_report_command_reads_a_job_through_the_client_from_the_emulator(tmp_path: Path) -> None:
    """A finished job in an emulator's store, read over REST by the real aiplatform client."""
    from google.cloud.aiplatform_v1.types import HyperparameterTuningJob

    from hydra_vertex.emulator import start
    from hydra_vertex.emulator.store import atomic_write_json

    name = "projects/local-project/locations/us-central1/hyperparameterTuningJobs/123456"
    # stored as the emulator stores it: enums by name (a number is a wrong-shaped record)
    resource = json.loads(
        HyperparameterTuningJob.to_json(_tuning_job(name), use_integers_for_enums=False)
    )
    state = tmp_path / "state"
    atomic_write_json(state / "jobs" / "hyperparameterTuningJobs" / "123456.json",
                      {"resource": resource, "internal": {}})
    with start(state) as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_")}
        env.update(HYDRA_VERTEX_EMULATOR=emu.endpoint, HYDRA_VERTEX_EMULATOR_TOKEN=emu.token)
        done = subprocess.run([str(CLI), "report", name, "-o", "report.html"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "report.html").read_text()
    assert 'id="best-trial">2<' in html
    assert "optimizer.lr=0.001 width=32" in html
    assert html.count("<tr data-trial=") == 3
