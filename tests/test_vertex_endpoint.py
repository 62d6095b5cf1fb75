"""Endpoint resolution: the emulator variable first, then an explicit endpoint, then Google's default."""

from __future__ import annotations

import pytest

from hydra_vertex import vertex


@pytest.mark.parametrize(
    ("env", "explicit", "expected", "is_emulator"),
    [
        pytest.param({"HYDRA_VERTEX_EMULATOR": "http://127.0.0.1:8123/"}, None, "http://127.0.0.1:8123", True, id="emulator"),
        pytest.param({"HYDRA_VERTEX_EMULATOR": "http://127.0.0.1:8123"}, "europe-west4-aiplatform.example", "http://127.0.0.1:8123", True, id="emulator-beats-explicit"),
        pytest.param({}, "custom.endpoint.example", "custom.endpoint.example", False, id="explicit"),
        pytest.param({}, None, None, False, id="google-default"),
    ],
)
def test_resolution_order(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    explicit: str | None,
    expected: str | None,
    is_emulator: bool,
) -> None:
    monkeypatch.delenv("HYDRA_VERTEX_EMULATOR", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    got = vertex.resolve_endpoint(explicit)
    assert (got.api_endpoint, got.is_emulator) == (expected, is_emulator)


def test_init_aiplatform_points_the_real_sdk_at_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud.aiplatform import initializer

    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", "http://127.0.0.1:9")
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", "s3cret")
    cfg = initializer.global_config
    try:
        vertex.init_aiplatform("proj", "us-central1")
        assert cfg.api_endpoint == "http://127.0.0.1:9"
        assert cfg.project == "proj" and cfg.location == "us-central1"
        assert cfg.credentials.token == "s3cret"
    finally:
        cfg.__init__()  # type: ignore[misc]  # back to the SDK's defaults for later tests
