"""The real google-cloud-storage client (``STORAGE_EMULATOR_HOST``) against the emulator's Cloud
Storage JSON API subset, backed by its storage root."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from hydra_vertex.emulator import EmulatorHandle
from hydra_vertex.vertex import bearer_credentials


@pytest.fixture
def gcs(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Any:
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    return storage.Client(project="test-project", credentials=bearer_credentials(emulator.token))


def test_round_trip(gcs: Any, emulator: EmulatorHandle) -> None:
    from google.api_core import exceptions

    bucket = gcs.create_bucket("round-trip", location="us-central1")
    assert bucket.location == "US-CENTRAL1"
    assert gcs.bucket("round-trip").exists() and not gcs.bucket("no-such-bucket").exists()
    with pytest.raises(exceptions.Conflict):
        gcs.create_bucket("round-trip")
    bucket.blob("runs/a/one.txt").upload_from_string(b"one", content_type="text/plain")
    bucket.blob("runs/b/two.txt").upload_from_string(b"two")
    big = bucket.blob("blobs/big.bin", chunk_size=256 * 1024)  # resumable, in chunks
    data = os.urandom(700 * 1024)
    big.upload_from_string(data)

    assert [b.name for b in gcs.list_blobs("round-trip", prefix="runs/")] == [
        "runs/a/one.txt",
        "runs/b/two.txt",
    ]
    top = gcs.list_blobs("round-trip", delimiter="/")
    assert [b.name for b in top] == [] and top.prefixes == {"runs/", "blobs/"}
    assert [b.name for b in gcs.list_blobs("round-trip", max_results=1)] == ["blobs/big.bin"]
    pages = gcs.list_blobs("round-trip", page_size=1)
    assert len([b.name for b in pages]) == 3

    one = bucket.get_blob("runs/a/one.txt")
    assert (one.size, one.content_type) == (3, "text/plain")
    assert one.download_as_bytes() == b"one"
    assert big.download_as_bytes() == data
    assert big.download_as_bytes(start=10, end=19) == data[10:20]
    # the same place a job's gs:// paths map to, both ways
    root = emulator.state_dir / "storage" / "round-trip"
    assert (root / "runs" / "a" / "one.txt").read_bytes() == b"one"
    (root / "runs" / "from-job.txt").write_bytes(b"written by a trial")
    assert bucket.blob("runs/from-job.txt").download_as_bytes() == b"written by a trial"

    with pytest.raises(exceptions.NotFound):
        bucket.blob("runs/missing.txt").download_as_bytes()
    with pytest.raises(exceptions.NotFound):
        gcs.get_bucket("no-such-bucket")
    assert bucket.get_blob("runs/missing.txt") is None
    bucket.blob("runs/b/two.txt").delete()
    assert not bucket.blob("runs/b/two.txt").exists()


def test_names_are_confined(gcs: Any, emulator: EmulatorHandle) -> None:
    from google.api_core import exceptions

    bucket = gcs.create_bucket("confined")
    for name in ("../escape.txt", "a/../../escape.txt", "a//b", "dir/"):
        with pytest.raises(exceptions.BadRequest, match="not supported"):
            bucket.blob(name).upload_from_string(b"x")
    assert not (emulator.state_dir / "storage" / "escape.txt").exists()
    # a symlink planted in the bucket is neither listed nor served
    secret = emulator.state_dir / "secret.txt"
    secret.write_text("secret")
    (emulator.state_dir / "storage" / "confined" / "link.txt").symlink_to(secret)
    assert [b.name for b in gcs.list_blobs("confined")] == []
    with pytest.raises(exceptions.NotFound):
        bucket.blob("link.txt").download_as_bytes()


def test_missing_token_is_refused(gcs: Any, emulator: EmulatorHandle) -> None:
    from google.api_core import exceptions
    from google.auth.exceptions import RefreshError
    from google.cloud import storage

    gcs.create_bucket("guarded")
    url = f"{emulator.endpoint}/storage/v1/b/guarded"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)
    assert info.value.code == 401
    wrong = storage.Client(project="test-project", credentials=bearer_credentials("wrong"))
    # on a 401 the client's session tries to refresh the static token, and cannot
    with pytest.raises((exceptions.Unauthorized, RefreshError)):
        wrong.get_bucket("guarded")


def test_pipeline_bucket_check_is_local_and_quick(
    sdk: Any, emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``PipelineJob.submit()`` does first: create the pipeline root's bucket if missing."""
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import gcs_utils

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    started = time.monotonic()
    root = gcs_utils.create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist(
        output_artifacts_gcs_dir="gs://pipeline-root-bucket/runs",
        service_account="runner@test-project.iam.gserviceaccount.com",
        project="test-project",
        location="us-central1",
        credentials=initializer.global_config.credentials,
    )
    assert root == "gs://pipeline-root-bucket/runs"
    assert time.monotonic() - started < 5
    assert (emulator.state_dir / "storage" / "pipeline-root-bucket").is_dir()
    from google.cloud import storage

    client = storage.Client(project="test-project", credentials=bearer_credentials(emulator.token))
    policy = client.bucket("pipeline-root-bucket").get_iam_policy()
    assert (
        "serviceAccount:runner@test-project.iam.gserviceaccount.com"
        in policy["roles/storage.objectCreator"]
    )
