"""The emulator console's renderer, called directly on a real Store (the browser tests go through
the real emulator): pages, escaping, the token carried in links, log tails, errors, refresh."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hydra_vertex.emulator import console
from hydra_vertex.emulator.store import COLLECTIONS, Store

EVIL = '<script>alert(1)</script>"'
TUNING = "hyperparameterTuningJobs"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state")
    s.put(TUNING, "111", {"internal": {}, "resource": {
        "name": "projects/p/locations/l/hyperparameterTuningJobs/111",
        "displayName": "demo-tuning" + EVIL, "state": "JOB_STATE_RUNNING",
        "createTime": "2026-11-23T10:00:00.123Z", "maxTrialCount": 3, "parallelTrialCount": 2,
        "studySpec": {"metrics": [{"metricId": "loss", "goal": "MINIMIZE"}]},
        "trials": [
            {"id": "1", "state": "SUCCEEDED",
             "parameters": [{"parameterId": "lr", "value": 0.01}, {"parameterId": "model", "value": "cnn"}],
             "finalMeasurement": {"metrics": [{"metricId": "loss", "value": 0.25}]}},
            {"id": "2", "state": "INFEASIBLE", "parameters": [{"parameterId": "lr", "value": 0.5}],
             "infeasibleReason": "trial crashed: " + EVIL},
            {"id": "3", "state": "ACTIVE", "parameters": [{"parameterId": "lr", "value": 0.1}]},
        ],
    }})
    s.put("customJobs", "222", {"internal": {}, "resource": {
        "name": "projects/p/locations/l/customJobs/222", "displayName": "demo-retrain",
        "state": "JOB_STATE_FAILED", "error": {"code": 3, "message": "exit 1: " + EVIL},
    }})
    yield s
    s.close()


def _get(store: Store, path: str, **query: str) -> tuple[int, str, str]:
    status, ctype, body = console.render(store, path, query)
    return status, ctype, body.decode()


def test_index_lists_every_collection_with_states(store: Store) -> None:
    status, ctype, html = _get(store, "/")
    assert status == 200 and ctype == "text/html; charset=utf-8"
    assert 'data-collection="hyperparameterTuningJobs" data-id="111"' in html
    assert 'data-collection="customJobs" data-id="222"' in html
    assert "2/3 trials" in html  # done (succeeded or infeasible) of the budget
    assert 'data-state="JOB_STATE_RUNNING"' in html and 'data-state="JOB_STATE_FAILED"' in html
    shown = re.findall(r"<h2>([^<(]+) \(", html)
    expected = [title for c, title in console.SECTIONS if c in COLLECTIONS]
    assert shown == [t + "" for t in expected]
    assert "<script" not in html and "&lt;script&gt;" in html
    assert '<meta http-equiv="refresh"' in html  # something is running
    assert _get(store, "/console")[2] == html


def test_the_token_rides_along_in_every_link(store: Store) -> None:
    html = _get(store, "/", token="t0k+n/=")[2]
    links = re.findall(r'href="([^"]+)"', html)
    assert links and all(link.endswith("?token=t0k%2Bn%2F%3D") for link in links), links
    job = _get(store, f"/console/{TUNING}/111", token="abc")[2]
    assert f'href="/console/{TUNING}/111/trials/1/log?token=abc"' in job
    assert "token" not in _get(store, "/")[2].split("<body>")[1]  # none given, none added


def test_a_tuning_jobs_page_shows_its_trials(store: Store) -> None:
    status, _, html = _get(store, f"/console/{TUNING}/111")
    assert status == 200
    rows = re.findall(r'<tr data-trial="(\d+)" data-state="(\w+)">(.*?)</tr>', html)
    assert [(r[0], r[1]) for r in rows] == [("1", "SUCCEEDED"), ("2", "INFEASIBLE"), ("3", "ACTIVE")]
    assert "0.25" in rows[0][2] and "lr=0.01 model=cnn" in rows[0][2]
    assert "trial crashed: &lt;script&gt;" in rows[1][2]
    assert "MINIMIZE loss" in html and "<script" not in html


def test_a_failed_custom_job_shows_its_error_and_no_refresh(store: Store) -> None:
    status, _, html = _get(store, "/console/customJobs/222")
    assert status == 200
    assert 'id="error">exit 1: &lt;script&gt;' in html
    assert "http-equiv=\"refresh\"" not in html
    assert 'href="/console/customJobs/222/log"' in html


def test_a_trials_log_tail(store: Store) -> None:
    run = store.run_dir("111", "1")
    run.mkdir(parents=True)
    (run / "stdout.log").write_text("".join(f"line {i} {EVIL}\n" for i in range(500)))
    status, _, html = _get(store, f"/console/{TUNING}/111/trials/1/log", lines="3")
    assert status == 200
    out = re.search(r'<pre class="log" id="stdout">(.*?)</pre>', html, re.S)
    assert out is not None
    assert [line.split(" ")[1] for line in out.group(1).splitlines()] == ["497", "498", "499"]
    assert "no stderr.log (yet)" in html and "<script" not in html
    default = _get(store, f"/console/{TUNING}/111/trials/1/log")[2]
    assert len(re.findall(r"line \d+ ", default)) == console.DEFAULT_LOG_LINES


def test_a_planted_symlink_log_is_not_followed(store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    run = store.run_dir("222")
    run.mkdir(parents=True)
    os.symlink(secret, run / "stderr.log")
    html = _get(store, "/console/customJobs/222/log")[2]
    assert "TOP SECRET" not in html and "no stderr.log (yet)" in html


@pytest.mark.parametrize(
    ("path", "query", "status", "message"),
    [
        ("/console/nope/1", {}, 404, "no collection"),
        (f"/console/{TUNING}/999", {}, 404, "no hyperparameterTuningJobs with id"),
        (f"/console/{TUNING}/111/trials/9/log", {}, 404, "has no trial"),
        (f"/console/{TUNING}/111/trials/1/log", {"lines": "many"}, 400, "not a whole number"),
        ("/console/customJobs/../../etc/passwd", {}, 404, "no console page"),
        (f"/console/{TUNING}/111/extra", {}, 404, "no console page"),
        ("/v1/projects", {}, 404, "no console page"),
    ],
)
def test_bad_paths_are_clear_errors(
    store: Store, path: str, query: dict[str, str], status: int, message: str
) -> None:
    got, _, html = _get(store, path, **query)
    assert got == status and message in html


def test_pipeline_runs_and_schedules_are_listed_when_the_store_has_them(store: Store) -> None:
    if "pipelineJobs" not in COLLECTIONS:
        pytest.skip("this store has no pipelineJobs collection yet")
    store.put("pipelineJobs", "run-1", {"internal": {}, "resource": {
        "displayName": "nightly", "state": "PIPELINE_STATE_SUCCEEDED",
        "jobDetail": {"taskDetails": [{"taskName": "launch-tuning", "state": "SUCCEEDED"}]}}})
    store.put("schedules", "5", {"internal": {}, "resource": {
        "displayName": "weekly", "state": "ACTIVE", "cron": "TZ=Europe/Paris 0 3 * * 1"}})
    html = _get(store, "/")[2]
    assert 'data-collection="pipelineJobs" data-id="run-1"' in html and "1 tasks" in html
    assert "cron TZ=Europe/Paris 0 3 * * 1" in html
    run = _get(store, "/console/pipelineJobs/run-1")[2]
    assert '<tr data-task="launch-tuning">' in run


def test_the_csp_header_allows_only_the_page_style() -> None:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(console.STYLE.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in console.CSP
    assert "default-src 'none'" in console.CSP and "frame-ancestors 'none'" in console.CSP



def test_console_routes_are_browser_pages_and_nothing_else(store: Store) -> None:
    from hydra_vertex.emulator.router import ApiError, Router

    router = Router(console.routes(store))
    for path in ("/", "/console", "/console/x/1", "/console/customJobs/1/log"):
        assert router.resolve("GET", path).route.browser
    assert router.resolve("HEAD", "/console/x/1").route.method == "GET"
    for path in ("/v1/projects/p", "/consoles", "/console/a/b/c/d"):
        with pytest.raises(ApiError) as e:
            router.resolve("GET", path)
        assert e.value.code == 404
    with pytest.raises(ApiError) as e:
        router.resolve("POST", "/console")
    assert e.value.code == 405


