from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where the tests' image environments are cached (a fixed directory, so that a rerun builds
#: nothing): $HYDRA_VERTEX_TEST_ENVS, else ~/.cache/hydra-vertex-tests/envs.
TEST_ENVS = Path(
    os.environ.get("HYDRA_VERTEX_TEST_ENVS")
    or Path.home() / ".cache" / "hydra-vertex-tests" / "envs"
)


@pytest.fixture(autouse=True)
def _test_envs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HYDRA_VERTEX_ENVS", str(TEST_ENVS))
    # The emulators started here lend no GPU unless the caller names some: the tests do not
    # depend on the machine's GPUs (a job asking for 2 would be refused on a 1-GPU machine).
    monkeypatch.setenv("HYDRA_VERTEX_GPUS", os.environ.get("HYDRA_VERTEX_GPUS", ""))
    yield
