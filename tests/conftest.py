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
    yield
