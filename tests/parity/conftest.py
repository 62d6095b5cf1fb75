"""The parity suite: Google's own published client code (vendored under ``vendored/``, see
VENDORED.md) run against the emulator, changed only in endpoint, credentials and image.

One emulator for the suite; every image the samples name is mapped (``--image NAME=DIR``) to
``images/hptune``: the Dockerfile of Google's hyperparameter-tuning notebook, whose ENTRYPOINT
(``python -m trainer.task``) runs a small trainer that reports with cloudml-hypertune.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import parity_endpoint
import pytest

from hydra_vertex.emulator import EmulatorHandle, connect, start

HERE = Path(__file__).parent
VENDORED = HERE / "vendored"
IMAGE_DIR = HERE / "images" / "hptune"
PROJECT, LOCATION = "parity-project", "us-central1"
#: The images the samples name: the job_service tests' image, the model-builder tests' constant,
#: the notebook's Artifact Registry image.
SNIPPETS_IMAGE = "gcr.io/ucaip-sample-tests/ucaip-training-test:latest"
MODEL_BUILDER_IMAGE = "gcr.io/my_project/my_image:latest"
NOTEBOOK_IMAGE = f"{LOCATION}-docker.pkg.dev/{PROJECT}/horses-app/horse_human_hptune:latest"


def load(relative: str) -> ModuleType:
    """A vendored module by its path under ``vendored/`` (samples of different sources share
    file names, so each gets a module name of its own)."""
    path = VENDORED / relative
    name = "parity_" + relative.removesuffix(".py").replace("/", "_").replace("-", "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


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
        emulator.state_dir, project=PROJECT, location=LOCATION,
        staging_bucket="gs://parity-bucket/staging",
    )
    monkeypatch.setitem(parity_endpoint.EMULATOR, "transport", "rest")
    monkeypatch.setitem(
        parity_endpoint.EMULATOR, "credentials", bearer_credentials(emulator.token)
    )
    monkeypatch.setitem(parity_endpoint.NOTEBOOK, "PROJECT_ID", PROJECT)
    return aiplatform


@pytest.fixture
def job_client(sdk: Any, emulator: EmulatorHandle) -> Any:
    """A GAPIC JobServiceClient for the checks around the samples (as the snippets' conftest)."""
    from hydra_vertex.vertex import emulator_job_client

    return emulator_job_client(emulator.endpoint, emulator.token)


def create_tuning_job(endpoint: str, capsys: pytest.CaptureFixture[str], prefix: str) -> str:
    """Run the job_service snippet that creates a tuning job (2 trials of the image's
    ENTRYPOINT); its resource name, read from what it prints as Google's tests read it."""
    load("job_service/create_hyperparameter_tuning_job_sample.py").create_hyperparameter_tuning_job_sample(
        display_name=f"{prefix}_{uuid.uuid4()}",
        container_image_uri=SNIPPETS_IMAGE,
        project=PROJECT,
        api_endpoint=endpoint,
    )
    out, _ = capsys.readouterr()
    assert "response" in out
    return str(load("job_service/helpers.py").get_name(out))


def wait_state(get: Any, name: str, state: str, timeout: float = 120) -> None:
    """Until ``get(name).state`` is ``state``. (The snippets' ``helpers.wait_for_job_state``
    compares ``str(response.state)``, which is the number on Python >= 3.11's IntEnum.)"""
    deadline = time.monotonic() + timeout
    while (got := get(name).state.name) != state:
        assert time.monotonic() < deadline, f"{name} is {got}, not {state}"
        time.sleep(0.2)
