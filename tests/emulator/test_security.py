"""Security rules: loopback, bearer token, Host/Origin, validated names, confinement, body limit."""

from __future__ import annotations

import http.client
import json
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from _helpers import IMAGE, worker_pool

from hydra_vertex.emulator import EmulatorHandle, start

PARENT = "/v1/projects/test-project/locations/us-central1"


def _request(
    handle: EmulatorHandle,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = "default",
) -> tuple[int, Any]:
    url = urlsplit(handle.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    all_headers = {"Content-Type": "application/json"}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {handle.token if token == 'default' else token}"
    all_headers.update(headers or {})
    conn.request(method, path, body=body, headers=all_headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if data else None


def _job_body(command: list[str] | None = None, image: str = IMAGE, **extra: Any) -> bytes:
    pools = worker_pool(command or ["sleep", "30"])
    pool = pools[0]
    return json.dumps(
        {
            "displayName": "s",
            "jobSpec": {
                "workerPoolSpecs": [
                    {
                        "machineSpec": {"machineType": "n1-standard-4"},
                        "replicaCount": "1",
                        "containerSpec": {
                            "imageUri": image,
                            "command": pool["container_spec"]["command"],
                        },
                    }
                ]
            },
            **extra,
        }
    ).encode()


def test_loopback_by_default(emulator: EmulatorHandle) -> None:
    assert emulator.endpoint.startswith("http://127.0.0.1:")
    assert (emulator.state_dir / "endpoint.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("token", [None, "wrong", ""], ids=["missing", "wrong", "empty"])
def test_token_required(emulator: EmulatorHandle, token: str | None) -> None:
    status, body = _request(emulator, "GET", f"{PARENT}/customJobs", token=token)
    assert status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "headers",
    [{"Host": "evil.example:80"}, {"Origin": "http://evil.example"}, {"Origin": "null"}],
    ids=["dns-rebinding-host", "foreign-origin", "null-origin"],
)
def test_foreign_host_or_origin_refused(emulator: EmulatorHandle, headers: dict[str, str]) -> None:
    status, body = _request(emulator, "GET", f"{PARENT}/customJobs", headers=headers)
    assert status == 403
    assert body["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        # malformed ids and names are 400 (as on Vertex), paths no route has are 404
        (f"{PARENT}/customJobs/..", 400),
        (f"{PARENT}/customJobs/%2e%2e", 400),
        (f"{PARENT}/customJobs/..%2f..%2fstate", 400),
        (f"{PARENT}/customJobs/1%00", 400),
        (f"{PARENT}/customJobs/{'1' * 33}", 400),
        (f"{PARENT}/customJobs/abc", 400),
        (f"{PARENT}/pipelineJobs/Bad_Id", 400),
        (f"{PARENT}/customJobs//etc/passwd", 404),
        ("/v1/projects/../locations/us-central1/customJobs", 400),
        ("/v1/projects/p%2f..%2f/locations/us-central1/customJobs", 400),
        (f"{PARENT}/customJobs/123", 404),  # well formed, not there
    ],
)
def test_bad_names_are_rejected(emulator: EmulatorHandle, path: str, status: int) -> None:
    got, body = _request(emulator, "GET", path)
    assert got == status, body
    assert body["error"]["status"] == {400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}[status]
    assert "Traceback" not in body["error"]["message"]


def test_body_over_limit(emulator: EmulatorHandle) -> None:
    from hydra_vertex.emulator.server import MAX_BODY_BYTES

    url = urlsplit(emulator.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("POST", f"{PARENT}/customJobs")
    conn.putheader("Authorization", f"Bearer {emulator.token}")
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()  # the server answers from the declared size, before any body is sent
    resp = conn.getresponse()
    assert resp.status == 413
    assert "exceeds the limit" in json.loads(resp.read())["error"]["message"]
    conn.close()


def test_unknown_field_is_invalid_argument(emulator: EmulatorHandle) -> None:
    status, body = _request(emulator, "POST", f"{PARENT}/customJobs", body=_job_body(notAField=1))
    assert status == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert "notAField" in body["error"]["message"]


def test_unknown_image_is_failed_precondition(emulator: EmulatorHandle) -> None:
    status, body = _request(
        emulator, "POST", f"{PARENT}/customJobs", body=_job_body(image="gcr.io/nope/image:1")
    )
    assert status == 400
    assert body["error"]["status"] == "FAILED_PRECONDITION"
    assert "gcr.io/nope/image:1" in body["error"]["message"]
    assert not (emulator.state_dir / "runs").exists()  # nothing ran


def test_planted_symlinks_are_not_followed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    outside = tmp_path / "outside.json"
    outside.write_text(
        json.dumps({"resource": {"name": "x", "state": "JOB_STATE_RUNNING"}, "internal": {}})
    )
    (state / "jobs" / "customJobs").mkdir(parents=True)
    os.symlink(outside, state / "jobs" / "customJobs" / "123.json")
    handle = start(state)
    try:
        status, _ = _request(handle, "GET", f"{PARENT}/customJobs/123")
        assert status == 404
    finally:
        handle.stop()


def test_symlinked_state_file_is_refused(tmp_path: Path) -> None:
    from hydra_vertex.errors import EmulatorError

    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "elsewhere.json").write_text('{"schema_version": 1}')
    os.symlink(tmp_path / "elsewhere.json", state / "state.json")
    with pytest.raises(EmulatorError, match="symlink"):
        start(state)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    from hydra_vertex.errors import EmulatorError

    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text('{"schema_version": 99}')
    with pytest.raises(EmulatorError, match="schema_version 99"):
        start(state)


def test_fifty_concurrent_sdk_clients(sdk: Any) -> None:
    names: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        try:
            job = sdk.CustomJob(
                display_name=f"c{i}", worker_pool_specs=worker_pool(["sleep", "30"])
            )
            job.submit()
            got = sdk.CustomJob.get(job.resource_name)
            assert got.display_name == f"c{i}"
            sdk.CustomJob.list()
            job.cancel()
            with lock:
                names.append(job.resource_name)
        except BaseException as e:
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    assert len(set(names)) == 50
    jobs = sdk.CustomJob.list()
    assert {j.resource_name for j in jobs} >= set(names)
