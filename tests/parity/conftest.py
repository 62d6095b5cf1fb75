"""The parity suite: Google's own published client code (vendored under ``vendored/``, see
VENDORED.md) run against the emulator, changed only in endpoint, credentials and image.

One emulator for the suite; every image the samples name is mapped (``--image NAME=DIR``) to
``images/hptune``: the Dockerfile of Google's hyperparameter-tuning notebook, whose ENTRYPOINT
(``python -m trainer.task``) runs a small trainer that reports with cloudml-hypertune.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import parity_endpoint
import pytest
from parity_support import (
    IMAGE_DIR,
    LOCATION,
    MODEL_BUILDER_IMAGE,
    NOTEBOOK_IMAGE,
    PROJECT,
    SNIPPETS_IMAGE,
)

from hydra_vertex.emulator import EmulatorHandle, connect, start


@pytest.fixture(scope="package")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    images = {
        name: str(IMAGE_DIR) for name in (SNIPPETS_IMAGE, MODEL_BUILDER_IMAGE, NOTEBOOK_IMAGE)
    }
    with start(tmp_path_factory.mktemp("parity-state"), images=images, seed=0) as handle:
        yield handle


@pytest.fixture
def sdk(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The SDK pointed at the emulator with ``connect()`` (what the README's recipe does), and
    the vendored snippets' transport and credentials."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import jobs, pipeline_jobs

    from hydra_vertex.vertex import bearer_credentials

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.5)  # the SDK's poll intervals (seconds)
    monkeypatch.setattr(pipeline_jobs, "_JOB_WAIT_TIME", 0.5)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)  # connect() sets it (restored)
    connect(
        emulator.state_dir,
        project=PROJECT,
        location=LOCATION,
        staging_bucket="gs://parity-bucket/staging",
    )
    monkeypatch.setitem(parity_endpoint.EMULATOR, "transport", "rest")
    monkeypatch.setitem(parity_endpoint.EMULATOR, "credentials", bearer_credentials(emulator.token))
    monkeypatch.setitem(parity_endpoint.NOTEBOOK, "PROJECT_ID", PROJECT)
    return aiplatform


@pytest.fixture
def job_client(sdk: Any, emulator: EmulatorHandle) -> Any:
    """A GAPIC JobServiceClient for the checks around the samples (as the snippets' conftest)."""
    from hydra_vertex.vertex import emulator_job_client

    return emulator_job_client(emulator.endpoint, emulator.token)
