"""Two tokens (issue 15): the API token (``endpoint.json``, never printed) opens everything; the
console token (the printed console link) opens the read-only console pages and nothing else: no
Vertex call, no upload, no console action. Neither reaches a trial.

Through a real emulator over HTTP; the start line and ``hydra-vertex open`` through the installed
commands, as a user runs them.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from _helpers import IMAGE, worker_pool

from hydra_vertex.emulator import EmulatorHandle

PARENT = "/v1/projects/test-project/locations/us-central1"
CLI = Path(sys.executable).with_name("hydra-vertex")
DEADLINE = 120.0  # seconds; generous: the machine is shared


def _call(
    handle: EmulatorHandle, method: str, path: str, token: str, body: bytes = b"",
    content_type: str = "application/json",
) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(handle.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=DEADLINE)
    try:
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _page(handle: EmulatorHandle, path: str, token: str, method: str = "GET") -> tuple[int, str]:
    """A console page as a browser opens it: the token in the query."""
    sep = "&" if "?" in path else "?"
    status, _, body = _call(handle, method, f"{path}{sep}token={token}", token="")
    return status, body.decode()


def _sleeping_job(handle: EmulatorHandle, command: list[str]) -> str:
    pool = worker_pool(command)[0]
    spec = {"workerPoolSpecs": [{
        "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1",
        "containerSpec": {"imageUri": IMAGE, "command": pool["container_spec"]["command"]}}]}
    body = json.dumps({"displayName": "tokens", "jobSpec": spec}).encode()
    status, _, data = _call(handle, "POST", f"{PARENT}/customJobs", handle.token, body)
    assert status == 200, data
    return str(json.loads(data)["name"]).rsplit("/", 1)[1]


def _state(handle: EmulatorHandle, job_id: str) -> str:
    status, _, data = _call(handle, "GET", f"{PARENT}/customJobs/{job_id}", handle.token)
    assert status == 200, data
    return str(json.loads(data)["state"])


def _until(what: str, check: Any) -> Any:
    end = time.monotonic() + DEADLINE
    while not (got := check()):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)
    return got


def test_endpoint_json_holds_two_different_tokens(emulator: EmulatorHandle) -> None:
    info = json.loads((emulator.state_dir / "endpoint.json").read_text())
    assert info["token"] == emulator.token and info["console_token"] == emulator.console_token
    assert emulator.console_token and emulator.console_token != emulator.token
    assert emulator.console_url == f"{emulator.endpoint}/?token={emulator.console_token}"
    assert emulator.token not in emulator.console_url


def test_the_console_token_opens_the_pages_and_nothing_else(emulator: EmulatorHandle) -> None:
    job_id = _sleeping_job(emulator, ["sleep", "600"])
    console = emulator.console_token
    # the read-only pages: the index, a job, its log (GET and HEAD)
    for path in ("/", "/console", f"/console/customJobs/{job_id}",
                 f"/console/customJobs/{job_id}/log"):
        status, html = _page(emulator, path, console)
        assert status == 200, (path, html[:300])
        assert emulator.token not in html
    assert _page(emulator, f"/console/customJobs/{job_id}", console, "HEAD")[0] == 200
    running = _page(emulator, f"/console/customJobs/{job_id}", console)[1]
    assert 'id="cancel-disabled"' in running and 'id="cancel-form"' not in running
    # the API refuses it, in the header or in the query
    body = json.dumps({"displayName": "x", "jobSpec": {}}).encode()
    refused = [
        ("POST", f"{PARENT}/customJobs", body),
        ("GET", f"{PARENT}/customJobs", b""),
        ("GET", f"{PARENT}/customJobs/{job_id}", b""),
        ("POST", f"{PARENT}/customJobs/{job_id}:cancel", b""),
        ("GET", "/emulator/v1/devices", b""),
        ("GET", "/emulator/v1/console", b""),
        ("POST", "/upload/storage/v1/b/bucket/o?uploadType=media&name=x", b"data"),
    ]
    for method, path, data in refused:
        assert _call(emulator, method, path, console, data)[0] == 401, (method, path)
        assert _page(emulator, path, console, method)[0] == 401, (method, path)
    # the cancel action: a valid form (from a page opened with the API token) posted with the
    # console token is refused; the same form with the API token cancels
    page = _page(emulator, f"/console/customJobs/{job_id}", emulator.token)[1]
    form = re.search(r'action="([^"]+)" id="cancel-form"><input type="hidden" name="csrf" '
                     r'value="([^"]+)"', page)
    assert form is not None, page[:500]
    action = form.group(1).replace("&amp;", "&").split("?", 1)[0]
    csrf = f"csrf={form.group(2)}".encode()
    form_type = "application/x-www-form-urlencoded"
    status, _, _ = _call(emulator, "POST", f"{action}?token={console}", "", csrf, form_type)
    assert status == 403
    status, _, _ = _call(emulator, "POST", action, console, csrf, form_type)
    assert status == 403
    assert _state(emulator, job_id) == "JOB_STATE_RUNNING"
    status, headers, _ = _call(
        emulator, "POST", f"{action}?token={emulator.token}", "", csrf, form_type
    )
    assert status == 303 and "cancelled=1" in headers["Location"]
    _until("CANCELLED", lambda: _state(emulator, job_id) == "JOB_STATE_CANCELLED")


def test_the_api_token_still_opens_everything(emulator: EmulatorHandle) -> None:
    assert _call(emulator, "GET", f"{PARENT}/customJobs", emulator.token)[0] == 200
    assert _page(emulator, "/", emulator.token)[0] == 200
    status, _, data = _call(emulator, "GET", "/emulator/v1/console", emulator.token)
    assert status == 200 and json.loads(data) == {"url": emulator.console_url}


def test_neither_token_reaches_a_trial(
    emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator's own environment holds both (as under ``run --local``, or a user's shell);
    the trial's has neither, under any name."""
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", emulator.token)
    monkeypatch.setenv("MY_CONSOLE_LINK", emulator.console_url)
    monkeypatch.setenv("MY_API_HEADER", f"Bearer {emulator.token}")
    dump = "import json, os, sys; print(json.dumps([sys.argv, dict(os.environ)]))"  # argv too
    job_id = _sleeping_job(emulator, [sys.executable, "-c", dump])
    _until("SUCCEEDED", lambda: _state(emulator, job_id) == "JOB_STATE_SUCCEEDED")
    out = (emulator.state_dir / "runs" / job_id / "stdout.log").read_text()
    _, env = json.loads(out)
    assert env["CLOUD_ML_JOB_ID"] == job_id  # it is the trial's environment
    assert "HYDRA_VERTEX_EMULATOR_TOKEN" not in env
    assert "MY_CONSOLE_LINK" not in env and "MY_API_HEADER" not in env
    assert emulator.token not in out and emulator.console_token not in out


def test_the_start_line_and_open_print_only_the_console_token(tmp_path: Path) -> None:
    """`hydra-vertex emulator` as a user starts it, then `hydra-vertex open` on its state
    directory and through HYDRA_VERTEX_EMULATOR (which asks the emulator for the link)."""
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_EMULATOR")}
    env.update(HYDRA_VERTEX_GPUS="", NO_COLOR="1")
    proc = subprocess.Popen(
        [str(CLI), "emulator", "--state-dir", str(state), "--no-grpc", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]  # blocks until printed (or exit)
        info = json.loads((state / "endpoint.json").read_text())
        api, console = info["token"], info["console_token"]
        printed = "".join(lines)
        assert printed.rstrip().endswith(f"{info['endpoint']}/?token={console}"), printed
        assert api not in printed
        by_state = subprocess.run([str(CLI), "open", "--state-dir", str(state)], env=env,
                                  capture_output=True, text=True, timeout=DEADLINE)
        by_env = subprocess.run(
            [str(CLI), "open"], capture_output=True, text=True, timeout=DEADLINE,
            env={**env, "HYDRA_VERTEX_EMULATOR": info["endpoint"],
                 "HYDRA_VERTEX_EMULATOR_TOKEN": api},
        )
        for done in (by_state, by_env):
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == f"{info['endpoint']}/?token={console}"
            assert api not in done.stdout + done.stderr
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=DEADLINE)
    assert api not in out + err
