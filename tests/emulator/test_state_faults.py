"""Corrupted, read-only and full state (issue 15): a job file that does not parse or has the wrong
shape is quarantined with one warning line and the emulator starts; no list answers 500 because
of one bad record; a read-only state directory is one line at start; a write that fails later
(ENOSPC) is one clear error (``StateWriteError``) and one 500 line, with nothing half-saved.

Read-only and full file systems are real: a read-only directory for a non-root user, else a tmpfs
mounted read-only or small (root); without either the test is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import IMAGE, worker_pool

from hydra_vertex.emulator import EmulatorHandle, start
from hydra_vertex.emulator.store import Store
from hydra_vertex.errors import EmulatorError, StateWriteError

PARENT = "projects/test-project/locations/us-central1"
BRANIN = Path(__file__).parent / "apps" / "branin"


def _record(job_id: str, **resource: Any) -> dict[str, Any]:
    return {
        "resource": {
            "name": f"{PARENT}/customJobs/{job_id}",
            "displayName": "stored",
            "state": "JOB_STATE_SUCCEEDED",
            "createTime": "2026-01-01T00:00:00.000000Z",
            **resource,
        },
        "internal": {"seed": 1},
    }


def _plant(state: Path, job_id: str, text: str, collection: str = "customJobs") -> Path:
    path = state / "jobs" / collection / f"{job_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = "100000000000000001"
BAD_RECORDS = [
    pytest.param("[1, 2]", "a record is a JSON object, got list", id="a-list"),
    pytest.param('{"resource": {}}', "'internal' must be an object", id="no-internal"),
    pytest.param(
        json.dumps({**_record("2"), "resource": {"displayName": "x", "state": "JOB_STATE_FAILED"}}),
        "'resource.name' must be",
        id="no-name",
    ),
    pytest.param(json.dumps(_record("999")), "'resource.name' must be", id="another-id"),
    pytest.param(json.dumps(_record("2", state="DONE")), "'DONE' is not a state", id="bad-state"),
    pytest.param(
        json.dumps(_record("2", jobSpec={"workerPoolSpecs": "x"})),
        "is not a valid customJobs resource",
        id="wrong-type-inside",
    ),
    pytest.param(
        json.dumps({**_record("2"), "internal": {"pid": "12"}}),
        "'internal.pid' has the wrong type",
        id="bad-internal",
    ),
    pytest.param(json.dumps(_record("2"))[:70], "it is not JSON", id="truncated"),
    pytest.param("", "it is empty", id="empty"),
]


@pytest.mark.parametrize(("text", "why"), BAD_RECORDS)
def test_a_bad_job_file_is_quarantined_and_the_rest_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sdk_rest: Any, text: str, why: str
) -> None:
    state = tmp_path / "state"
    bad = _plant(state, "2", text)
    _plant(state, GOOD, json.dumps(_record(GOOD)))
    with caplog.at_level(logging.WARNING, logger="hydra_vertex.emulator"):
        handle = start(state, grpc_port=None)
    try:
        moved = state / "quarantine" / "customJobs" / "2.json"
        assert not bad.exists() and moved.read_text() == text  # kept, byte for byte
        lines = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
        assert len(lines) == 1 and "\n" not in lines[0]
        assert "jobs/customJobs/2.json" in lines[0] and why in lines[0], lines[0]
        listed = sdk_rest(handle).list_custom_jobs(parent=PARENT)  # before: 500 for every list
        assert [j.name.rsplit("/", 1)[1] for j in listed] == [GOOD]
    finally:
        handle.stop()


def test_a_second_bad_file_of_the_same_name_keeps_the_first(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for text in ("{", "[]"):
        _plant(state, "2", text)
        with start(state, grpc_port=None):
            pass
    names = sorted(p.name for p in (state / "quarantine" / "customJobs").iterdir())
    assert names == ["2.1.json", "2.json"]


def test_a_bad_state_json_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text('{"schema_vers')
    with pytest.raises(EmulatorError, match=r"state\.json.* is not valid JSON") as info:
        start(state, grpc_port=None)
    assert "\n" not in str(info.value)


@pytest.fixture
def sdk_rest() -> Any:
    """A GAPIC JobServiceClient over REST for a handle (the aiplatform SDK's own transport)."""

    def make(handle: EmulatorHandle) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.cloud import aiplatform_v1

        from hydra_vertex.vertex import bearer_credentials

        return aiplatform_v1.JobServiceClient(
            transport="rest",
            client_options=ClientOptions(api_endpoint=handle.endpoint),
            credentials=bearer_credentials(handle.token),
        )

    return make


# -- read-only and full file systems --------------------------------------------------------------


def _mount_tmpfs(where: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def read_only_state(tmp_path: Path) -> Iterator[Path]:
    """A state directory that holds a previous emulator's state and cannot be written."""
    state = tmp_path / "state"
    if os.geteuid() != 0:
        with start(state, grpc_port=None):
            pass
        state.chmod(0o500)
        yield state
        state.chmod(0o700)
        return
    if not _mount_tmpfs(state, "size=4m,mode=0700"):
        pytest.skip("a read-only file system needs a non-root user or a tmpfs mount")
    try:
        with start(state, grpc_port=None):
            pass
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        yield state
    finally:
        _umount(state)


def test_a_read_only_state_directory_is_one_line(read_only_state: Path) -> None:
    cli = Path(sys.executable).with_name("hydra-vertex")
    proc = subprocess.run(
        [str(cli), "emulator", "--state-dir", str(read_only_state), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("hydra-vertex emulator: error: state directory ")
    assert "cannot be used" in proc.stderr and "pass a writable --state-dir" in proc.stderr


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small"
    if not _mount_tmpfs(where, "size=1m,mode=0700"):
        pytest.skip("a full file system needs a tmpfs mount (root)")
    try:
        yield where
    finally:
        _umount(where)


def _fill(directory: Path) -> None:
    """Leave no free space (ENOSPC for the next write)."""
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_a_full_disk_is_a_state_write_error_and_nothing_half_saved(small_disk: Path) -> None:
    store = Store(small_disk / "state")
    try:
        store.put("customJobs", "2", _record("2"))
        _fill(small_disk)
        bigger = _record("2", displayName="x" * 100_000)
        with pytest.raises(StateWriteError) as info:
            store.put("customJobs", "2", bigger)
        message = str(info.value)
        assert "\n" not in message
        assert "customJobs/2" in message and "No space left on device" in message
        assert "the disk is full" in message
        assert store.get("customJobs", "2") == _record("2")  # memory = disk = the old record
        on_disk = json.loads((small_disk / "state" / "jobs" / "customJobs" / "2.json").read_text())
        assert on_disk == _record("2")
        assert not list((small_disk / "state" / "jobs" / "customJobs").glob(".*.tmp"))
    finally:
        store.close()


def test_a_full_disk_answers_one_line_500(
    small_disk: Path, caplog: pytest.LogCaptureFixture, sdk_rest: Any
) -> None:
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1

    with start(small_disk / "state", images={IMAGE: str(BRANIN)}, grpc_port=None) as handle:
        client = sdk_rest(handle)
        _fill(small_disk)
        pool = worker_pool(["true"])[0]
        job = aiplatform_v1.CustomJob(
            display_name="full", job_spec=aiplatform_v1.CustomJobSpec(worker_pool_specs=[pool])
        )
        with (
            caplog.at_level(logging.ERROR, logger="hydra_vertex.emulator"),
            pytest.raises(exceptions.InternalServerError, match="No space left on device"),
        ):
            client.create_custom_job(parent=PARENT, custom_job=job)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is None  # one line, no traceback
        assert "No space left on device" in errors[0].getMessage()
        (small_disk / "filler").unlink()
        assert list(client.list_custom_jobs(parent=PARENT)) == []  # nothing half-created
