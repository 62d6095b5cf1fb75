"""The list and operation surfaces through the real clients (SDK and GAPIC over REST): AIP-160
filters (400 for anything else), order_by, read_mask, opaque page tokens and pageSize 0,
operations get/list/wait/delete (and the SDK's delete), submit() with Cloud Storage on the
emulator, and a schedule's list_jobs()."""

from __future__ import annotations

import http.client
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from hydra_vertex.emulator import EmulatorHandle, connect, start

IMAGE = "local/python:3"
PROJECT, LOCATION = "surface-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    images = {IMAGE: str(tmp_path_factory.mktemp("image"))}
    with start(tmp_path_factory.mktemp("state"), images=images, seed=0) as handle:
        yield handle


@pytest.fixture
def sdk(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Any:
    from google.cloud import aiplatform
    from google.cloud.aiplatform import jobs, pipeline_jobs

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.5)  # the SDK's poll intervals
    monkeypatch.setattr(pipeline_jobs, "_JOB_WAIT_TIME", 0.5)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)  # connect() sets it (restored)
    connect(
        emulator.state_dir, project=PROJECT, location=LOCATION,
        staging_bucket="gs://surface-bucket/staging",
    )
    return aiplatform


@pytest.fixture
def client(emulator: EmulatorHandle) -> Any:
    from hydra_vertex.vertex import emulator_job_client

    return emulator_job_client(emulator.endpoint, emulator.token)


def _pool(script: str) -> list[dict[str, Any]]:
    return [
        {
            "machine_spec": {"machine_type": "n1-standard-4"},
            "replica_count": 1,
            "container_spec": {"image_uri": IMAGE, "command": [sys.executable, "-c", script]},
        }
    ]


@pytest.fixture(scope="module")
def three_jobs(emulator: EmulatorHandle) -> dict[str, str]:
    """alpha (team a, succeeds), beta (team b, fails), gamma (team a, succeeds), in that order."""
    from hydra_vertex.vertex import emulator_job_client

    client = emulator_job_client(emulator.endpoint, emulator.token)
    names = {}
    for name, team, script in (
        ("alpha", "a", "pass"), ("beta", "b", "raise SystemExit(3)"), ("gamma", "a", "pass"),
    ):
        job = client.create_custom_job(
            parent=PARENT,
            custom_job={"display_name": name, "labels": {"team": team},
                        "job_spec": {"worker_pool_specs": _pool(script)}},
        )
        names[name] = job.name
        time.sleep(0.01)  # distinct create times
    deadline = time.monotonic() + 120
    for name in names.values():
        while client.get_custom_job(name=name).state.name not in (
            "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    return names


def _names(jobs: list[Any]) -> set[str]:
    return {j.display_name for j in jobs}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('state="JOB_STATE_SUCCEEDED"', {"alpha", "gamma"}),
        ("state=JOB_STATE_FAILED OR display_name=alpha", {"alpha", "beta"}),
        ('state!="JOB_STATE_FAILED" AND display_name:"g*"', {"gamma"}),
        ("NOT labels.team=a", {"beta"}),
        ("-labels.team=a", {"beta"}),
        ('(labels.team=a AND display_name:"*mm*") OR display_name="beta"', {"gamma", "beta"}),
        ("labels.team:*", {"alpha", "beta", "gamma"}),
        ("labels.other:*", set()),
        ("create_time>2000-01-01T00:00:00Z AND update_time<2999-01-01T00:00:00Z",
         {"alpha", "beta", "gamma"}),
        ("create_time<2000-01-01T00:00:00Z", set()),
        ("displayName=alpha", {"alpha"}),  # camelCase too, as the SDK documents
    ],
)
def test_filters(sdk: Any, three_jobs: dict[str, str], text: str, want: set[str]) -> None:
    assert _names(sdk.CustomJob.list(filter=text)) == want


def test_create_time_comparisons(sdk: Any, client: Any, three_jobs: dict[str, str]) -> None:
    beta = client.get_custom_job(name=three_jobs["beta"]).create_time.isoformat()
    assert _names(sdk.CustomJob.list(filter=f'create_time>"{beta}"')) == {"gamma"}
    assert _names(sdk.CustomJob.list(filter=f"create_time<={beta}")) == {"alpha", "beta"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('bogus="x"', "unknown field 'bogus'"),
        ("display_name", "needs a comparator"),
        ("state=JOB_STATE_BOGUS", "'JOB_STATE_BOGUS' is not a state"),
        ("create_time>yesterday", "RFC 3339"),
        ('display_name<"b"', "takes =, !=, :"),
        ('display_name="alpha" garbage', "'garbage' needs a comparator"),
        ('(display_name="alpha"', "expected ')'"),
        ("display_name=alpha AND", "got the end"),
    ],
)
def test_anything_else_is_400(sdk: Any, three_jobs: dict[str, str], text: str, says: str) -> None:
    from google.api_core import exceptions

    with pytest.raises(exceptions.BadRequest) as e:
        sdk.CustomJob.list(filter=text)
    assert says in str(e.value) and "docs/emulator.md" in str(e.value)


def _get(emulator: EmulatorHandle, path: str) -> tuple[int, dict[str, Any]]:
    url = urlsplit(emulator.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {emulator.token}"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_order_by(emulator: EmulatorHandle, three_jobs: dict[str, str]) -> None:
    base = f"/v1/{PARENT}/customJobs?orderBy="

    def order(spec: str) -> list[str]:
        status, body = _get(emulator, base + quote(spec))
        assert status == 200, body
        return [j["displayName"] for j in body["customJobs"]]

    assert order("display_name") == ["alpha", "beta", "gamma"]
    assert order("display_name desc") == ["gamma", "beta", "alpha"]
    assert order("create_time") == ["alpha", "beta", "gamma"]
    assert order("") == ["gamma", "beta", "alpha"]  # the default: create_time desc
    status, body = _get(emulator, base + quote("job_spec desc"))
    assert status == 400 and "'job_spec desc' is not 'field [desc]'" in body["error"]["message"]


def test_read_mask(client: Any, three_jobs: dict[str, str]) -> None:
    from google.api_core import exceptions

    jobs = list(client.list_custom_jobs(
        request={"parent": PARENT, "read_mask": {"paths": ["name", "display_name", "state"]}}
    ))
    assert {j.display_name for j in jobs} == {"alpha", "beta", "gamma"}
    assert all(j.name and j.state.name != "JOB_STATE_UNSPECIFIED" for j in jobs)
    assert not any(j.job_spec.worker_pool_specs or j.labels or j.create_time for j in jobs)
    with pytest.raises(exceptions.BadRequest) as e:
        list(client.list_custom_jobs(request={"parent": PARENT, "read_mask": {"paths": ["nope"]}}))
    assert "read_mask: 'nope' is not a field path of CustomJob" in str(e.value)


def test_pages(client: Any, emulator: EmulatorHandle, three_jobs: dict[str, str]) -> None:
    from google.api_core import exceptions

    pager = client.list_custom_jobs(request={"parent": PARENT, "page_size": 1})
    pages = list(pager.pages)
    assert [len(p.custom_jobs) for p in pages] == [1, 1, 1]
    assert {j.display_name for p in pages for j in p.custom_jobs} == {"alpha", "beta", "gamma"}
    token = pages[0].next_page_token
    assert token and not token.isdigit()  # opaque
    zero = client.list_custom_jobs(request={"parent": PARENT, "page_size": 0})
    assert len(next(iter(zero.pages)).custom_jobs) == 3  # 0 is the default size, not 1
    for bad in ("garbage", token):  # undecodable; from another query (the filter differs)
        with pytest.raises(exceptions.BadRequest) as e:
            client.list_custom_jobs(
                request={"parent": PARENT, "page_token": bad, "filter": "labels.team=a"}
            )
        assert "page_token" in str(e.value)


def test_operations(sdk: Any, client: Any, emulator: EmulatorHandle) -> None:
    from google.api_core import exceptions

    doomed = []
    for name in ("doomed-1", "doomed-2"):
        job = sdk.CustomJob(display_name=name, worker_pool_specs=_pool("pass"))
        job.run()
        doomed.append(job.resource_name)
    # the GAPIC client: delete answers an Operation; its mixin reads it under /ui/
    lro = client.delete_custom_job(name=doomed[0])
    lro.result(timeout=60)
    op_name = lro.operation.name
    assert op_name.startswith(doomed[0] + "/operations/")
    got = client.get_operation(request={"name": op_name})
    assert got.done and got.name == op_name
    assert client.wait_operation(request={"name": op_name}).done
    assert [o.name for o in client.list_operations(request={"name": doomed[0]}).operations] == [
        op_name
    ]
    in_location = client.list_operations(request={"name": PARENT}).operations
    assert op_name in [o.name for o in in_location]
    status, body = _get(emulator, f"/v1/{op_name}")  # the /v1/ binding as well
    assert status == 200 and body["done"] is True
    # the SDK's delete (it waits on the operation)
    sdk.CustomJob.get(doomed[1]).delete()
    with pytest.raises(exceptions.NotFound):
        client.get_custom_job(name=doomed[1])
    client.delete_operation(request={"name": op_name})
    with pytest.raises(exceptions.NotFound):
        client.get_operation(request={"name": op_name})
    with pytest.raises(exceptions.BadRequest):
        client.get_operation(request={"name": f"{doomed[0]}/operations/not-a-number"})


def test_submit_talks_to_the_emulators_storage_and_list_jobs_is_per_schedule(
    sdk: Any, emulator: EmulatorHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After connect() alone (no STORAGE_EMULATOR_HOST set by hand) submit()'s bucket check
    reaches the emulator: the emulator logs the bucket GET, and the SDK logs no failed bucket
    step (before, it went to Google's storage host and retried for 85-110 s). A schedule's
    list_jobs() returns that schedule's runs only."""
    from google.cloud.aiplatform_v1 import PipelineServiceClient
    from kfp import compiler

    sys.path.insert(0, str(Path(__file__).parents[1] / "contract"))
    try:
        from echo_pipeline import echo_pipeline
    finally:
        sys.path.pop(0)
    template = tmp_path / "echo.json"
    compiler.Compiler().compile(echo_pipeline, str(template))
    bucket = f"fresh-bucket-{int(time.time() * 1000)}"
    assert not (emulator.storage_root / bucket).exists()
    alone = sdk.PipelineJob(
        display_name="alone", template_path=str(template), pipeline_root=f"gs://{bucket}/root"
    )
    caplog.set_level(logging.DEBUG, logger="hydra_vertex.emulator")  # each request, logged
    alone.submit()
    seen = [r.getMessage() for r in caplog.records if r.name == "hydra_vertex.emulator"]
    assert f"GET /storage/v1/b/{bucket}" in seen  # the SDK's bucket check came here
    assert not [r for r in caplog.records if "bucket" in r.getMessage() and r.levelno >= 40]

    start_time = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    scheduled = sdk.PipelineJob(
        display_name="scheduled", template_path=str(template),
        pipeline_root=f"gs://{bucket}/root",
    )
    schedule = scheduled.create_schedule(
        cron="* * * * *", display_name="every-minute", start_time=start_time, max_run_count=1
    )
    deadline = time.monotonic() + 60
    while not schedule.list_jobs():
        assert time.monotonic() < deadline, "the schedule fired no run"
        time.sleep(0.5)
    runs = schedule.list_jobs()
    schedule_id = schedule.resource_name.rsplit("/", 1)[-1]
    assert [r.resource_name.rsplit("/", 1)[-1] for r in runs] == [f"{schedule_id}-1"]
    alone.wait()
    runs[0].wait()
    pipelines = PipelineServiceClient(
        transport="rest", client_options={"api_endpoint": emulator.endpoint},
        credentials=sdk.initializer.global_config.credentials,
    )
    ordered = pipelines.list_pipeline_jobs(request={"parent": PARENT, "order_by": "create_time"})
    assert [j.name for j in ordered] == [alone.resource_name, runs[0].resource_name]
    schedule.delete()
