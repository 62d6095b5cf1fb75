"""What the parity tests share besides fixtures: the images the samples name, loading a vendored
sample by path, and the waits around them."""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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


def create_tuning_job(endpoint: str, capsys: pytest.CaptureFixture[str], prefix: str) -> str:
    """Run the job_service snippet that creates a tuning job (2 trials of the image's
    ENTRYPOINT); its resource name, read from what it prints as Google's tests read it."""
    load(
        "job_service/create_hyperparameter_tuning_job_sample.py"
    ).create_hyperparameter_tuning_job_sample(
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
