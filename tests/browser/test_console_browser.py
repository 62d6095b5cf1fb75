"""The emulator's console in headless Chromium, through a real emulator on a real run's state:
the token in the link, the jobs and their states, a job's trials, a trial's log; refused without
the token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _browser import DigitsRun, page_errors, screenshot

from hydra_vertex.emulator import EmulatorHandle, start

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator(digits_run: DigitsRun) -> Iterator[EmulatorHandle]:
    handle = start(digits_run.state)
    try:
        yield handle
    finally:
        handle.stop()


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def test_console_lists_the_jobs_then_a_jobs_trials_then_a_trials_log(
    browser: Any, digits_run: DigitsRun, emulator: EmulatorHandle
) -> None:
    summary = digits_run.summary
    tuning_id = summary["tuning_job"].rsplit("/", 1)[-1]
    retrain_id = summary["retrain_job"].rsplit("/", 1)[-1]
    browser.get(f"{emulator.endpoint}/?token={emulator.token}")
    page_errors(browser)
    assert browser.title.startswith("Emulator console")
    tuning = _css(browser, "table#hyperparameterTuningJobs tbody tr")
    assert [r.get_attribute("data-id") for r in tuning] == [tuning_id]
    assert "JOB_STATE_SUCCEEDED" in tuning[0].text and "digits-tuning" in tuning[0].text
    assert f"{len(summary['trials'])}/{len(summary['trials'])} trials" in tuning[0].text
    custom = _css(browser, "table#customJobs tbody tr")
    assert [r.get_attribute("data-id") for r in custom] == [retrain_id]
    assert "JOB_STATE_SUCCEEDED" in custom[0].text
    assert browser.execute_script("return document.scripts.length") == 0
    assert page_errors(browser) == []
    screenshot(browser, "console-index")

    tuning[0].find_element("css selector", "a").click()  # the token rides along in the link
    assert browser.title.startswith("digits-tuning")
    rows = _css(browser, "table#trials tbody tr")
    assert [r.get_attribute("data-trial") for r in rows] == [t["id"] for t in summary["trials"]]
    for row, trial in zip(rows, summary["trials"], strict=True):
        cells = row.find_elements("css selector", "td")
        assert cells[1].text == trial["state"]
        assert float(cells[2].text) == pytest.approx(trial["value"], rel=1e-5)
        for name in trial["parameters"]:
            assert f"{name}=" in cells[3].text
    assert page_errors(browser) == []
    screenshot(browser, "console-tuning-job")

    best = summary["best_trial_id"]
    _css(browser, f'tr[data-trial="{best}"] a')[0].click()
    assert browser.title.startswith(f"digits-tuning, trial {best}: log")
    stdout = _css(browser, "pre#stdout")[0].text
    assert f"val_error={summary['best_value']:.4f}" in stdout  # what the app logged
    assert page_errors(browser) == []
    screenshot(browser, "console-trial-log")


def test_console_without_the_token_is_refused(
    browser: Any, emulator: EmulatorHandle
) -> None:
    for url in (f"{emulator.endpoint}/", f"{emulator.endpoint}/?token=wrong"):
        browser.get(url)
        body = _css(browser, "body")[0].text
        assert "missing or invalid bearer token" in body
        assert "Emulator console" not in body
        page_errors(browser)
    # the token in the query opens console pages only, not the API
    browser.get(
        f"{emulator.endpoint}/v1/projects/p/locations/us-central1/customJobs?token={emulator.token}"
    )
    assert "missing or invalid bearer token" in _css(browser, "body")[0].text
    page_errors(browser)
