"""Fixtures: an in-process emulator and the real aiplatform SDK pointed at it over REST."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import FAILING_IMAGE, IMAGE

from hydra_vertex.emulator import EmulatorHandle, start

APPS = Path(__file__).parent / "apps"
BRANIN = APPS / "branin"
FAILING = Path(__file__).parents[1] / "apps" / "failing_app"  # a Hydra app whose runs all fail


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    images = {IMAGE: str(BRANIN), FAILING_IMAGE: str(FAILING)}
    handle = start(tmp_path / "state", images=images, seed=7)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sdk(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> object:
    from google.cloud import aiplatform
    from google.cloud.aiplatform import jobs

    from hydra_vertex.emulator import connect

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.5)  # the SDK's poll interval, not a mock
    monkeypatch.setattr(jobs, "_LOG_WAIT_TIME", 60)
    connect(
        emulator.state_dir,
        project="test-project",
        location="us-central1",
        staging_bucket="gs://test-bucket/staging",
    )
    return aiplatform
