"""Custom jobs: create and run, get, list, cancel."""

from __future__ import annotations

import time
from typing import Any

from _backend import Backend

SLEEP = "import time; time.sleep(3600)"


def test_create_get_list(aiplatform: Any, backend: Backend) -> None:
    job = aiplatform.CustomJob(
        display_name="contract-hello", worker_pool_specs=backend.worker_pool("print('hello')")
    )
    job.run()
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    got = aiplatform.CustomJob.get(job.resource_name)
    assert got.display_name == "contract-hello"
    assert got.state.name == "JOB_STATE_SUCCEEDED"
    assert got.gca_resource.start_time and got.gca_resource.end_time
    listed = aiplatform.CustomJob.list(filter='display_name="contract-hello"')
    assert job.resource_name in [j.resource_name for j in listed]


def test_cancel(aiplatform: Any, backend: Backend) -> None:
    job = aiplatform.CustomJob(
        display_name="contract-cancel", worker_pool_specs=backend.worker_pool(SLEEP)
    )
    job.submit()
    job.cancel()
    deadline = time.monotonic() + (120 if backend.name == "emulator" else 1800)
    while True:
        job = aiplatform.CustomJob.get(job.resource_name)
        if job.state.name not in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING",
                                  "JOB_STATE_CANCELLING"):
            break
        assert time.monotonic() < deadline, job.state.name
        time.sleep(backend.poll_seconds)
    assert job.state.name == "JOB_STATE_CANCELLED"
    assert job.gca_resource.error.code == 1  # google.rpc.Code.CANCELLED
