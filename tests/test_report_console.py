"""The emulator console's renderer, called directly on a real Store (the browser tests go through
the real emulator): pages, escaping, the token carried in links, log tails, errors, refresh."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hydra_vertex.emulator import console
from hydra_vertex.emulator.store import COLLECTIONS, Store

DATA = Path(__file__).parent / "data"

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


def _rows(html: str) -> list[tuple[str, str, str]]:
    return re.findall(r'<tr data-trial="(\d+)" data-state="(\w+)"[^>]*>(.*?)</tr>', html)


def test_a_tuning_jobs_page_shows_its_trials(store: Store) -> None:
    status, _, html = _get(store, f"/console/{TUNING}/111")
    assert status == 200
    rows = _rows(html)
    assert [(r[0], r[1]) for r in rows] == [("1", "SUCCEEDED"), ("2", "INFEASIBLE"), ("3", "ACTIVE")]
    assert 'data-value="0.25"' in rows[0][2]
    assert 'data-param="lr">0.01<' in rows[0][2] and 'data-param="model">cnn<' in rows[0][2]
    assert 'data-param="model"><' in rows[1][2]  # a parameter a trial lacks: an empty cell
    assert "trial crashed: &lt;script&gt;" in rows[1][2]
    assert "minimize loss" in html and "<script" not in html
    # the best trial is marked (row, star, the summary line), a column per parameter
    assert '<tr data-trial="1" data-state="SUCCEEDED" class="best-row">' in html
    assert 'id="best-trial">1<' in html and 'id="best-value" data-value="0.25"' in html
    heads = re.findall(r'<th[^>]*data-sort="([^"]+)"', html)
    assert heads == ["trial", "state", "value", "p:lr", "p:model", "started", "duration"]
    assert 'id="counts">1 succeeded · 1 failed · 1 running<' in html
    assert '<section id="charts">' in html and 'data-chart="history"' in html


def test_the_trials_sort_on_the_server_through_links(store: Store) -> None:
    def order(**query: str) -> list[str]:
        return [r[0] for r in _rows(_get(store, f"/console/{TUNING}/111", **query)[2])]

    assert order(sort="p:lr") == ["1", "3", "2"]
    assert order(sort="p:lr", order="desc") == ["2", "3", "1"]
    assert order(sort="value", order="desc") == ["1", "2", "3"]  # trials without one last
    assert order(sort="p:model") == ["1", "2", "3"]  # those without the parameter last
    assert order(sort="nonsense") == ["1", "2", "3"]  # an unknown column: by trial
    html = _get(store, f"/console/{TUNING}/111", token="t", sort="p:lr")[2]
    link = re.search(r'data-sort="p:lr"><a class="sorted" href="([^"]+)">lr ▲</a>', html)
    assert link is not None and link.group(1) == (
        f"/console/{TUNING}/111?token=t&amp;sort=p%3Alr&amp;order=desc"
    )


def test_durations_early_stops_devices_and_curves(tmp_path: Path) -> None:
    s = Store(tmp_path / "state")
    spec = {"metrics": [{"metricId": "loss", "goal": "MINIMIZE"}],
            "measurementSelectionType": "BEST_MEASUREMENT"}

    def m(step: int, v: float) -> dict[str, object]:
        return {"stepCount": str(step), "metrics": [{"metricId": "loss", "value": v}]}

    s.put(TUNING, "5", {"internal": {}, "resource": {
        "name": "projects/p/locations/l/hyperparameterTuningJobs/5", "displayName": "gpu-tuning",
        "state": "JOB_STATE_RUNNING", "startTime": "2026-05-01T10:00:00Z", "maxTrialCount": 3,
        "studySpec": spec,
        "trials": [
            {"id": "1", "state": "SUCCEEDED", "startTime": "2026-05-01T10:00:00Z",
             "endTime": "2026-05-01T10:01:05Z", "devices": [0, 1],
             "parameters": [{"parameterId": "lr", "value": 0.1}],
             "measurements": [m(0, 0.9), m(1, 0.4), m(2, 0.5)],
             "finalMeasurement": m(2, 0.5)},
            {"id": "2", "state": "SUCCEEDED", "startTime": "2026-05-01T10:00:01Z",
             "endTime": "2026-05-01T10:00:31Z", "_early_stopped": "median rule at step 1",
             "parameters": [{"parameterId": "lr", "value": 0.5}],
             "measurements": [m(0, 1.2), m(1, 1.1)], "finalMeasurement": m(1, 1.1)},
            {"id": "3", "state": "ACTIVE", "startTime": "2026-05-01T10:01:06Z",
             "parameters": [{"parameterId": "lr", "value": 0.2}]},
        ],
    }})
    now = datetime(2026, 5, 1, 10, 1, 36, tzinfo=UTC)
    html = console.render(s, f"/console/{TUNING}/5", {}, now=now)[2].decode()
    s.close()
    rows = {r[0]: r[2] for r in _rows(html)}
    assert 'data-value="0.4"' in rows["1"]  # BEST_MEASUREMENT: the best of the curve
    assert 'class="devices">0, 1<' in rows["1"] and 'class="devices"><' in rows["2"]
    assert 'data-seconds="65.000">1m05s<' in rows["1"]
    assert 'class="num running" data-seconds="30.000">30s so far<' in rows["3"]
    assert 'data-stopped="true" title="median rule at step 1">stopped early<' in rows["2"]
    assert "elapsed</dt><dd>1m36s so far<" in html
    assert 'data-chart="curves"' in html and 'data-chart="timeline"' in html
    assert 'class="stop-mark"' in html  # the early stop, on its curve


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
    assert '<tr data-task="launch-tuning" data-depth="0">' in run


def _recorded(store: Store) -> str:
    """The records of a real `hydra-vertex submit` against the emulator (tests/data): the
    pipeline run, its tuning job and its retrain; the run's id."""
    records = json.loads((DATA / "pipeline_run.json").read_text())
    for collection, items in records.items():
        for rec in items:
            store.put(collection, rec["resource"]["name"].rsplit("/", 1)[-1], rec)
    return str(records["pipelineJobs"][0]["resource"]["name"].rsplit("/", 1)[-1])


def test_a_pipeline_runs_page_orders_its_tasks_and_links_its_jobs(store: Store) -> None:
    run_id = _recorded(store)
    html = _get(store, f"/console/pipelineJobs/{run_id}", token="t")[2]
    tasks = re.findall(r'<tr data-task="([^"]+)" data-depth="(\d)">', html)
    assert tasks == [("hydra-vertex-tune-and-retrain", "0"), ("build-image", "1"),
                     ("launch-tuning", "1"), ("best-trial", "1"), ("retrain", "1")]
    assert re.search(r'id="output-best_value">0\.0177778<', html)
    assert 'id="output-best_overrides"><pre class="paste">model=svm model.C=6.431' in html
    jobs = re.findall(r'<li data-job="([^"]+)"><a href="([^"]+)">([^<]+)</a>', html)
    assert [(j[2], j[1].split("?")[1]) for j in jobs] == [
        ("digits-tuning", "token=t"), ("digits-retrain", "token=t")]
    assert "best_trial_id=1" in html  # a task's outputs in its row


def test_a_running_pipeline_links_the_jobs_it_created_so_far(store: Store) -> None:
    run_id = _recorded(store)

    def running(rec: dict[str, Any]) -> None:  # as it was while the tuning ran
        res = rec["resource"]
        res["state"] = "PIPELINE_STATE_RUNNING"
        res.pop("endTime", None)
        res["jobDetail"]["taskDetails"] = [
            t for t in res["jobDetail"]["taskDetails"] if t["taskName"] == "build-image"
        ] + [{"taskId": "4", "taskName": "launch-tuning", "state": "RUNNING"}]

    store.update("pipelineJobs", run_id, running)
    html = _get(store, f"/console/pipelineJobs/{run_id}")[2]
    assert re.findall(r'<tr data-task="([^"]+)"', html) == ["build-image", "launch-tuning"]
    assert re.findall(r'<li data-job="[^"]+"><a href="[^"]+">([^<]+)</a>', html) == [
        "digits-tuning", "digits-retrain"]  # found by the app's name and the run's times
    assert 'id="cancel-form"' in html and '<meta http-equiv="refresh"' in html


@pytest.mark.parametrize(
    ("spec", "details", "order"),
    [
        pytest.param(None, [], [], id="no tasks yet"),
        pytest.param(
            {"root": {"dag": {"tasks": {"b": {"dependentTasks": ["a"]}, "a": {}, "c": {"dependentTasks": ["b"]}}}}},
            [{"taskId": "3", "taskName": "c"}, {"taskId": "1", "taskName": "b"}, {"taskId": "2", "taskName": "a"},
             {"taskId": "9", "taskName": "root"}],
            [(0, "root"), (1, "a"), (1, "b"), (1, "c")], id="dependencies, the root first"),
        pytest.param(
            {"root": {"dag": {"tasks": {"x": {}, "y": {}}}}},
            [{"taskId": "1", "taskName": "root"}, {"taskId": "2", "taskName": "y", "parentTaskId": "1", "startTime": "2026-01-01T00:00:01Z"},
             {"taskId": "3", "taskName": "x", "parentTaskId": "1", "startTime": "2026-01-01T00:00:02Z"},
             {"taskId": "4", "taskName": "inner", "parentTaskId": "3"}],
            [(0, "root"), (1, "x"), (2, "inner"), (1, "y")], id="nested tasks under their parent"),
    ],
)
def test_pipeline_tasks_in_dag_order(spec: Any, details: list[dict[str, Any]], order: list[tuple[int, str]]) -> None:
    from hydra_vertex.pipeline_dag import ordered_tasks

    run = {"pipelineSpec": spec, "jobDetail": {"taskDetails": details}}
    assert [(depth, t["taskName"]) for depth, t in ordered_tasks(run)] == order


def test_the_cancel_button_needs_its_pages_csrf_token_and_the_right_to_act(tmp_path: Path) -> None:
    s = Store(tmp_path / "state")
    s.put(TUNING, "7", {"internal": {}, "resource": {
        "name": "projects/p/locations/l/hyperparameterTuningJobs/7", "displayName": "x",
        "state": "JOB_STATE_RUNNING", "studySpec": {"metrics": [{"metricId": "loss", "goal": "MINIMIZE"}]}}})
    called: list[tuple[str, str]] = []

    def api(method: str, path: str) -> Any:
        called.append((method, path))
        return 200, {}

    from hydra_vertex.emulator.router import Request

    c = console.Console(s, api=api)
    html = c.render(f"/console/{TUNING}/7", {"token": "t"})[2].decode()
    form = re.search(r'<form method="post" action="([^"]+)" id="cancel-form"><input type="hidden" '
                     r'name="csrf" value="([^"]+)">', html)
    assert form is not None and form.group(1) == f"/console/{TUNING}/7:cancel?token=t"

    def post(body: str, auth: str = "api", job: str = "7") -> int:
        request = Request("POST", f"/console/{TUNING}/{job}:cancel", {"token": "t"}, {}, body.encode(), auth)
        return c.cancel(request, TUNING, job)[0]

    assert post("csrf=forged") == 403 and called == []
    assert post(f"csrf={form.group(2)}", job="8") == 403  # another job's form
    assert post(f"csrf={form.group(2)}", auth="console") == 403  # a read-only console token
    assert post(f"csrf={form.group(2)}") == 303
    assert called == [("POST", "/v1/projects/p/locations/l/hyperparameterTuningJobs/7:cancel")]
    assert console.may_act("console", True) and not console.may_act("console", False)
    read_only = c.render(f"/console/{TUNING}/7", {}, auth="console")[2].decode()
    assert 'id="cancel-form"' not in read_only and 'id="cancel-disabled"' in read_only
    s.close()


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


