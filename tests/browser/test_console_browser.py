"""The emulator's console in headless Chromium, through a real emulator on a real run's state:
the token in the link, the jobs and their states, a job's trials (a column per parameter, the best
marked, sortable, the charts), a trial's log; a login page without the token; a running job
cancelled with the page's button; a pipeline run's tasks in DAG order with its outputs and jobs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import DigitsRun, page_errors, screenshot

from hydra_vertex.emulator import EmulatorHandle, start

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GATED = ROOT / "tests" / "apps" / "gated_app"
DATA = ROOT / "tests" / "data"


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
    browser.get(emulator.console_url)  # the printed link: the read-only console token
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
        assert cells[1].text.startswith(trial["state"])
        assert float(cells[2].text) == pytest.approx(trial["value"], rel=1e-5)
        for name, value in trial["parameters"].items():  # one column per parameter
            cell = row.find_element("css selector", f'td[data-param="{name}"]')
            if isinstance(value, float):
                assert float(cell.text) == pytest.approx(value, rel=1e-5)
            else:
                assert cell.text == str(value)
        assert row.find_elements("css selector", "td[data-seconds]")[0].text  # a duration
    best_rows = _css(browser, "tr.best-row")
    assert [r.get_attribute("data-trial") for r in best_rows] == [summary["best_trial_id"]]
    assert "★" in best_rows[0].text and _css(browser, "#best-trial")[0].text == summary["best_trial_id"]
    charts = {c.get_attribute("data-chart") for c in _css(browser, "svg.chart-svg")}
    assert {"history", "timeline"} <= charts
    assert [p.get_attribute("data-trial") for p in _css(browser, 'svg[data-chart="history"] circle[data-best]')] == [
        summary["best_trial_id"]]
    assert _css(browser, "#cancel") == []  # it has ended: nothing to cancel
    assert browser.execute_script("return document.scripts.length") == 0
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert page_errors(browser) == []
    screenshot(browser, "console-tuning-job")

    # sorting is a link: by the objective, worst first
    _css(browser, 'th[data-sort="value"] a')[0].click()
    _css(browser, 'th[data-sort="value"] a')[0].click()
    values = [float(r.find_elements("css selector", "td")[2].text or "nan")
              for r in _css(browser, "table#trials tbody tr") if r.get_attribute("data-state") == "SUCCEEDED"]
    assert values == sorted(values, reverse=True)
    assert "token=" in browser.current_url and "order=desc" in browser.current_url

    best = summary["best_trial_id"]
    _css(browser, f'tr[data-trial="{best}"] a')[0].click()
    assert browser.title.startswith(f"digits-tuning, trial {best}: log")
    stdout = _css(browser, "pre#stdout")[0].text
    assert f"val_error={summary['best_value']:.4f}" in stdout  # what the app logged
    assert page_errors(browser) == []
    screenshot(browser, "console-trial-log")


def test_console_without_the_token_is_a_login_page(
    browser: Any, emulator: EmulatorHandle, digits_run: DigitsRun
) -> None:
    tuning_id = digits_run.summary["tuning_job"].rsplit("/", 1)[-1]
    for url in (f"{emulator.endpoint}/", f"{emulator.endpoint}/?token=wrong"):
        browser.get(url)
        body = _css(browser, "body")[0].text
        assert "missing or invalid bearer token" in body and "hydra-vertex open" in body
        assert "digits-tuning" not in body and _css(browser, "table") == []
        page_errors(browser)
    # the login form opens the page it was on
    browser.get(f"{emulator.endpoint}/console/hyperparameterTuningJobs/{tuning_id}")
    screenshot(browser, "console-login")
    page_errors(browser)  # the 401 of the page itself
    _css(browser, "#login input[name=token]")[0].send_keys(emulator.console_token)
    _css(browser, "#login button")[0].click()
    # the click returns before the next page has loaded: wait for it, then check it
    _until("the page after signing in", lambda: not browser.title.startswith("Emulator console"),
           30, show=lambda: browser.title)
    assert browser.title.startswith("digits-tuning")
    assert page_errors(browser) == []
    assert _css(browser, "#cancel-form") == []  # read-only: no cancel with the console token
    # the console token opens console pages only, not the API
    browser.get(
        f"{emulator.endpoint}/v1/projects/p/locations/us-central1/customJobs"
        f"?token={emulator.console_token}"
    )
    assert "missing or invalid bearer token" in _css(browser, "body")[0].text
    page_errors(browser)


def test_cancel_from_the_console_ends_the_job_cancelled(browser: Any, tmp_path: Path) -> None:
    """A tuning job whose trials wait (tests/apps/gated_app), cancelled with the page's button."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    from hydra_vertex.emulator import connect

    shim = Path(sys.executable).with_name("hydra-vertex-shim")
    command = [str(shim), "--search-space", "space.yaml", "--", sys.executable, "app.py",
               f"gate={tmp_path / 'gates'}"]
    pool = [{"machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": 1,
             "container_spec": {"image_uri": "local/gated:1", "command": command, "args": []}}]
    with start(tmp_path / "state", images={"local/gated:1": str(GATED)}) as emu:
        connect(emu.state_dir, project="p", location="us-central1", staging_bucket="gs://b/s")
        custom = aiplatform.CustomJob(display_name="gated-trial", worker_pool_specs=pool)
        job = aiplatform.HyperparameterTuningJob(
            display_name="gated-tuning", custom_job=custom, metric_spec={"loss": "minimize"},
            parameter_spec={"x": hpt.DoubleParameterSpec(-2, 4, "linear")},
            max_trial_count=4, parallel_trial_count=2,
        )
        job.run(sync=False)
        _until("the job to exist", lambda: job._gca_resource.name)
        name = job.resource_name
        _until("a running trial", lambda: any(
            t.state.name == "ACTIVE" for t in aiplatform.HyperparameterTuningJob.get(name).trials))
        browser.get(f"{emu.endpoint}/console/hyperparameterTuningJobs/{job.name}?token={emu.token}")
        assert "JOB_STATE_RUNNING" in _css(browser, ".actions")[0].text
        assert _css(browser, 'meta[http-equiv="refresh"]')  # it refreshes while it runs
        screenshot(browser, "console-running-job")
        _css(browser, "#cancel")[0].click()
        _until("the job's page again", lambda: "cancelled=1" in browser.current_url, 30,
               lambda: (browser.current_url, _css(browser, "body")[0].text[:300]))
        assert _css(browser, "#cancel-requested")
        assert page_errors(browser) == []
        _until("CANCELLED", lambda: aiplatform.HyperparameterTuningJob.get(name).state.name
               == "JOB_STATE_CANCELLED")
        browser.get(f"{emu.endpoint}/console/hyperparameterTuningJobs/{job.name}?token={emu.token}")
        assert "JOB_STATE_CANCELLED" in _css(browser, ".actions")[0].text
        assert _css(browser, "#cancel") == [] and not _css(browser, 'meta[http-equiv="refresh"]')
        screenshot(browser, "console-cancelled-job")


def test_the_pipeline_page_lists_tasks_in_dag_order_with_outputs_and_jobs(
    browser: Any, tmp_path: Path
) -> None:
    """A pipeline run recorded from a real `hydra-vertex submit` against the emulator."""
    from hydra_vertex.emulator.store import Store

    records = json.loads((DATA / "pipeline_run.json").read_text())
    store = Store(tmp_path / "state")
    for collection, items in records.items():
        for rec in items:
            store.put(collection, rec["resource"]["name"].rsplit("/", 1)[-1], rec)
    store.close()
    [run] = records["pipelineJobs"]
    run_id = run["resource"]["name"].rsplit("/", 1)[-1]
    with start(tmp_path / "state") as emu:
        browser.get(f"{emu.endpoint}/console/pipelineJobs/{run_id}?token={emu.token}")
        tasks = [r.get_attribute("data-task") for r in _css(browser, "table#tasks tbody tr")]
        assert tasks == ["hydra-vertex-tune-and-retrain", "build-image", "launch-tuning",
                         "best-trial", "retrain"]
        # (start and end times show where the stored task details have them)
        assert float(_css(browser, "#output-best_value")[0].text) > 0
        assert _css(browser, "#output-best_overrides pre")[0].text.startswith("model=")
        links = _css(browser, "#created-jobs a")
        assert sorted(a.text for a in links) == ["digits-retrain", "digits-tuning"]
        assert all("token=" in (a.get_attribute("href") or "") for a in links)
        assert page_errors(browser) == []
        screenshot(browser, "console-pipeline-run")
        links[0].click()
        assert browser.title.startswith(("digits-tuning", "digits-retrain"))


def _until(what: str, check: Any, deadline: float = 180.0, show: Any = None) -> Any:
    end = time.monotonic() + deadline
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, f"timed out waiting for {what}: {show() if show else ''}"
        time.sleep(0.2)
