"""The contract suite: Vertex AI behaviour that must hold on the emulator and on Vertex itself,
through the real ``google-cloud-aiplatform`` SDK over REST (moto's ``*_aws_verified`` tests and
LocalStack's snapshot tests are the model).

``backend`` is the emulator always, and live Vertex AI when ``HYDRA_VERTEX_LIVE_PROJECT``,
``HYDRA_VERTEX_LIVE_REGION`` and ``HYDRA_VERTEX_LIVE_BUCKET`` (``gs://...``) are set (it costs
money; ``HYDRA_VERTEX_LIVE_IMAGE`` is the image the jobs run, ``python:3.12-slim`` by default;
those runs are marked ``live``).
Jobs run ``python3 -c <script>`` so the same job runs on both. Emulator-only policies (fail fast,
restarts, security) stay in ``tests/emulator``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from _backend import IMAGE, LIVE, Backend


@pytest.fixture(
    scope="package", params=["emulator", pytest.param("live", marks=pytest.mark.live)]
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    if request.param == "live":
        missing = [v for v in LIVE if not os.environ.get(v)]
        if missing:
            pytest.skip(f"live Vertex AI: set {', '.join(missing)} (see docs/vertex.md)")
        yield Backend(
            "live",
            os.environ["HYDRA_VERTEX_LIVE_PROJECT"],
            os.environ["HYDRA_VERTEX_LIVE_REGION"],
            os.environ["HYDRA_VERTEX_LIVE_BUCKET"].rstrip("/"),
            IMAGE,
        )
        return
    from hydra_vertex.emulator import start

    image_dir = tmp_path_factory.mktemp("image")  # the jobs' working directory
    with start(tmp_path_factory.mktemp("state"), images={IMAGE: str(image_dir)}, seed=0) as h:
        yield Backend(
            "emulator", "contract-project", "us-central1", "gs://contract-bucket", IMAGE,
            h.state_dir, h.endpoint,
        )


@pytest.fixture
def aiplatform(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The SDK, initialised for the backend (each test: other suites re-initialise it)."""
    from google.cloud import aiplatform as sdk
    from google.cloud.aiplatform import jobs, pipeline_jobs
    from google.cloud.aiplatform.utils import resource_manager_utils

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", backend.poll_seconds)  # the SDK's poll interval
    monkeypatch.setattr(pipeline_jobs, "_JOB_WAIT_TIME", backend.poll_seconds)
    if backend.name == "live":
        for var in ("HYDRA_VERTEX_EMULATOR", "HYDRA_VERTEX_EMULATOR_TOKEN", "STORAGE_EMULATOR_HOST"):
            monkeypatch.delenv(var, raising=False)
        if getattr(resource_manager_utils.get_project_number, "_hydra_vertex", False):
            importlib.reload(resource_manager_utils)  # Google's own lookup, not the emulator's
        sdk.init(project=backend.project, location=backend.location, staging_bucket=backend.bucket)
        return sdk
    from hydra_vertex.emulator import connect

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", backend.endpoint)
    assert backend.state_dir is not None
    connect(
        backend.state_dir,
        project=backend.project,
        location=backend.location,
        staging_bucket=f"{backend.bucket}/staging",
    )
    return sdk
