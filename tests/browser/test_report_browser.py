"""The study report in headless Chromium: the charts and rows are there with the right values, the
best trial matches SUMMARY.json, no script runs, nothing is loaded, the CSP is not violated."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from _browser import DigitsRun, page_errors, screenshot

from hydra_vertex.report import write_report
from hydra_vertex.summary import Summary
from hydra_vertex.trials import TrialResult

pytestmark = pytest.mark.slow

EVIL = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _open(driver: Any, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    page_errors(driver)  # drop what an earlier page left in the log


def test_the_run_report_shows_every_trial_and_the_summary_winner(
    browser: Any, digits_run: DigitsRun
) -> None:
    summary = digits_run.summary
    _open(browser, digits_run.report)
    assert browser.title.startswith("hydra-vertex report: digits")
    # one row per trial, states and values as in SUMMARY.json
    rows = _css(browser, "table#trials tbody tr")
    assert [r.get_attribute("data-trial") for r in rows] == [t["id"] for t in summary["trials"]]
    assert [r.get_attribute("data-state") for r in rows] == [t["state"] for t in summary["trials"]]
    for row, trial in zip(rows, summary["trials"], strict=True):
        cell = row.find_elements("css selector", "td")[2]
        if trial["value"] is None:
            assert cell.text == ""
        else:
            assert float(cell.text) == pytest.approx(trial["value"], rel=1e-5)
    best_rows = _css(browser, "tr.best-row")
    assert [r.get_attribute("data-trial") for r in best_rows] == [summary["best_trial_id"]]
    # the winner matches the summary, and the overrides paste back to the same list
    assert _css(browser, "#best-trial")[0].text == summary["best_trial_id"]
    assert float(_css(browser, "#best-value")[0].text) == pytest.approx(summary["best_value"], rel=1e-5)
    assert shlex.split(_css(browser, "#best-overrides")[0].text) == summary["best_overrides"]
    # the charts are drawn (laid out with a size), with a point per succeeded trial
    charts = {s.get_attribute("data-chart"): s for s in _css(browser, "svg.chart-svg")}
    assert {"history", "parallel", "timeline", "importance", "slice"} <= set(charts)
    for svg in charts.values():
        assert svg.is_displayed() and svg.size["width"] > 200 and svg.size["height"] > 100
    succeeded = [t for t in summary["trials"] if t["state"] == "SUCCEEDED"]
    history = _css(browser, 'svg[data-chart="history"] circle.pt')
    clipped = _css(browser, 'svg[data-chart="history"] path.pt-clipped')  # far outliers
    assert len(history) + len(clipped) == len(succeeded)
    best_point = _css(browser, 'svg[data-chart="history"] circle.pt[data-best]')
    assert [p.get_attribute("data-trial") for p in best_point] == [summary["best_trial_id"]]
    line = _css(browser, 'svg[data-chart="history"] path.best-line[data-best-value]')[0]
    assert float(line.get_attribute("data-best-value")) == pytest.approx(summary["best_value"])
    pc = _css(browser, 'svg[data-chart="parallel"] path.pc-line')
    assert len(pc) == len(succeeded)
    # every trial's line reaches the objective axis, through the n/a band where it lacks a
    # conditional parameter (digits: model.C and model.gamma only for svm, model.alpha for sgd)
    axis = _css(browser, f'svg[data-chart="parallel"] line.pc-axis[data-axis="{summary["metric"]}"]')[0]
    objective_x = float(axis.get_attribute("x1"))
    for line in pc:
        box = browser.execute_script("const b = arguments[0].getBBox(); return [b.x, b.x + b.width];", line)
        assert box[1] == pytest.approx(objective_x, abs=0.5), line.get_attribute("data-trial")
        last = (line.get_attribute("d") or "").rsplit("L", 1)[-1].split(",")
        assert float(last[0]) == pytest.approx(objective_x, abs=0.05)
        expected = _objective_y(browser, float(line.get_attribute("data-value")))
        top, foot = 40.0, 320.0  # a far outlier is clipped to the axis's end
        assert float(last[1]) == pytest.approx(min(max(expected, top), foot), abs=1.0)
    assert any(line.get_attribute("data-na") for line in pc)  # conditional parameters: n/a band
    best_line = _css(browser, 'svg[data-chart="parallel"] path.pc-line[data-best]')
    assert [b.get_attribute("data-trial") for b in best_line] == [summary["best_trial_id"]]
    # the timeline has a bar per trial; the retrain's metric and the model's place are shown
    bars = _css(browser, 'svg[data-chart="timeline"] rect.tl-bar')
    assert sorted(b.get_attribute("data-trial") for b in bars) == sorted(t["id"] for t in summary["trials"])
    assert summary["retrain_value"] is not None
    shown = _css(browser, "#retrain-value")[0].get_attribute("data-value")
    assert float(shown) == pytest.approx(summary["retrain_value"])
    assert _css(browser, "#model-location")[0].text == summary["model_dir"]
    names = {n for t in summary["trials"] for n in t["parameters"]}
    slices = {s.get_attribute("data-param") for s in _css(browser, 'svg[data-chart="slice"]')}
    assert slices == names
    bars = _css(browser, 'svg[data-chart="importance"] rect.bar')
    assert {b.get_attribute("data-param") for b in bars} == names
    assert sum(float(b.get_attribute("data-importance")) for b in bars) == pytest.approx(1, abs=0.01)
    # self-contained and CSP-clean: no scripts, no requests, no console errors; styles applied
    assert browser.execute_script("return document.scripts.length") == 0
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    colour = browser.execute_script(
        "return getComputedStyle(document.querySelector('#status')).backgroundColor"
    )
    assert colour == "rgb(26, 127, 55)"  # the page's own style block ran under its CSP
    assert page_errors(browser) == []
    screenshot(browser, "report-digits")


def _objective_y(browser: Any, value: float) -> float:
    """Where ``value`` sits on the parallel chart's objective axis, from its own tick labels."""
    ticks = browser.execute_script(
        "const svg = document.querySelector('svg[data-chart=parallel]');"
        "const axis = [...svg.querySelectorAll('line.pc-axis')].pop();"
        "const x = Number(axis.getAttribute('x1'));"
        "return [...svg.querySelectorAll('text.pc-tick')]"
        ".filter(t => Math.abs(Number(t.getAttribute('x')) - x - 5) < 0.5 && !isNaN(Number(t.textContent)))"
        ".map(t => [Number(t.textContent), Number(t.getAttribute('y')) - 4]);"
    )
    (v0, y0), (v1, y1) = ticks[0], ticks[-1]
    return float(y0 + (value - v0) * (y1 - y0) / (v1 - v0))


def test_a_hostile_value_is_shown_as_text_and_nothing_runs(browser: Any, tmp_path: Path) -> None:
    summary = Summary(
        name="hostile", metric="loss", direction="maximize", status="failed",
        error="trial 2 crashed: " + EVIL,
        trials=[
            TrialResult("1", "SUCCEEDED", {"model": EVIL, "lr": 0.1}, 0.5),
            TrialResult("2", "INFEASIBLE", {"model": "b", "lr": 0.01}, None,
                        "trial crashed (exit 1); last log lines:\nRuntimeError: " + EVIL),
            TrialResult("3", "SUCCEEDED", {"model": "b", "lr": 0.001}, 0.7),
        ],
        best_trial_id="3", best_value=0.7, best_overrides=["model=b", "lr=0.001"],
    )
    path = write_report(summary, tmp_path / "report.html", wandb_runs={"3": "https://wandb.ai/x/y/runs/z"})
    _open(browser, path)
    assert browser.title != "pwned"
    assert browser.execute_script("return document.scripts.length") == 0
    assert _css(browser, "img") == []
    assert EVIL in _css(browser, "#error")[0].text
    assert "RuntimeError: " + EVIL in _css(browser, 'tr[data-trial="2"] td.reason')[0].text
    links = _css(browser, 'tr[data-trial="3"] a')
    assert [a.get_attribute("href") for a in links] == ["https://wandb.ai/x/y/runs/z"]
    # maximize: the best-so-far line ends at the highest value
    line = _css(browser, 'svg[data-chart="history"] path.best-line')[0]
    assert float(line.get_attribute("data-best-value")) == 0.7
    assert len(_css(browser, 'svg[data-chart="history"] path.pt-failed')) == 1
    assert page_errors(browser) == []
    screenshot(browser, "report-hostile")
