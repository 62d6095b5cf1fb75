"""``hydra_vertex.cloud_build``'s Google Cloud path (google-cloud-storage + google-cloud-build) run
for real against the emulator's Cloud Storage and Cloud Build subsets."""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from hydra_vertex import cloud_build
from hydra_vertex.emulator import EmulatorHandle
from hydra_vertex.vertex import bearer_credentials

PROJECT = "test-project"


@pytest.fixture
def env(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The environment a caller sets: the emulator for Vertex, Cloud Build and Cloud Storage."""
    from google.cloud import storage

    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", emulator.endpoint)
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", emulator.token)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    client = storage.Client(project=PROJECT, credentials=bearer_credentials(emulator.token))
    client.create_bucket("staging-bucket")
    return client


def _app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "train.py").write_text(
        "import pathlib, sys\n"
        "assert pathlib.Path('train.py').is_file(), 'not in the image workdir'\n"
        "print('trained', sys.argv[1:])\n"
    )
    return app


def test_upload_build_cache_hit_and_run(env: Any, sdk: Any, tmp_path: Path) -> None:
    uri = cloud_build.upload_source(
        _app(tmp_path), "gs://staging-bucket/pre", "tiny", PROJECT, base_image="python:3.11"
    )
    assert uri.startswith("gs://staging-bucket/pre/sources/tiny-") and uri.endswith(".tar.gz")
    assert env.bucket("staging-bucket").blob(uri.split("/", 3)[3]).exists()

    logs: list[str] = []
    image = cloud_build.build_image(
        uri, "tiny", PROJECT, "us-central1", log=logs.append, poll_seconds=0.1
    )
    assert image.startswith("hydra-vertex.local/tiny@sha256:"), image
    assert any("Cloud Build: building" in line for line in logs), logs

    again: list[str] = []
    assert cloud_build.build_image(uri, "tiny", PROJECT, "us-central1", log=again.append) == image
    assert any("cache hit" in line for line in again), again

    client = cloud_build.cloud_build_client()
    builds = list(client.list_builds(project_id=PROJECT, filter='status="SUCCESS"'))
    assert len(builds) == 1 and builds[0].status.name == "SUCCESS"
    assert builds[0].results.images[0].digest == "sha256:" + image.rsplit(":", 1)[1]
    got = client.get_build(project_id=PROJECT, id=builds[0].id)
    assert got.tags == ["hydra-vertex", f"src-{uri[-71:-7]}"] and got.finish_time

    job = sdk.CustomJob(
        display_name="built",
        worker_pool_specs=[
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {
                    "image_uri": image,
                    "command": [sys.executable, "train.py"],
                    "args": ["lr=0.1"],
                },
            }
        ],
    )
    job.run()
    assert job.state.name == "JOB_STATE_SUCCEEDED"


def _upload_tarball(client: Any, name: str, files: dict[str, bytes], link: str = "") -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo("escape")
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    obj = f"sources/{name}-{digest}.tar.gz"
    client.bucket("staging-bucket").blob(obj).upload_from_string(buf.getvalue())
    return f"gs://staging-bucket/{obj}"


@pytest.mark.parametrize(
    ("files", "link", "reason"),
    [
        ({"Dockerfile": b"FROM x\n", "../evil.py": b""}, "", "unsafe path '../evil.py'"),
        ({"Dockerfile": b"FROM x\n"}, "/etc/passwd", "'escape' is a link or special file"),
        ({"train.py": b"print()\n"}, "", "no Dockerfile at its root"),
    ],
)
def test_failing_build_is_reported(
    env: Any, emulator: EmulatorHandle, files: dict[str, bytes], link: str, reason: str
) -> None:
    uri = _upload_tarball(env, "bad", files, link)
    with pytest.raises(cloud_build.CloudBuildError, match="failed") as info:
        cloud_build.build_image(uri, "bad", PROJECT, "us-central1", log=print, poll_seconds=0.1)
    assert reason in str(info.value)
    failed = list(cloud_build.cloud_build_client().list_builds(project_id=PROJECT))
    assert failed[0].status.name == "FAILURE" and reason in failed[0].status_detail
    assert not (emulator.state_dir / "etc").exists()


def test_unsupported_filter_and_token(env: Any, emulator: EmulatorHandle) -> None:
    from google.api_core import exceptions
    from google.auth.exceptions import RefreshError
    from google.cloud.devtools import cloudbuild_v1

    client = cloud_build.cloud_build_client()
    with pytest.raises(exceptions.BadRequest, match="trigger_id"):
        list(client.list_builds(project_id=PROJECT, filter='trigger_id="x"'))
    with pytest.raises(exceptions.NotFound):
        client.get_build(project_id=PROJECT, id="00000000-0000-0000-0000-000000000000")
    wrong = cloudbuild_v1.CloudBuildClient(
        transport="rest",
        client_options={"api_endpoint": emulator.endpoint},
        credentials=bearer_credentials("wrong"),
    )
    # on a 401 the client's session tries to refresh the static token, and cannot
    with pytest.raises((exceptions.Unauthorized, RefreshError)):
        list(wrong.list_builds(project_id=PROJECT))


def test_builds_survive_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import storage

    from hydra_vertex.emulator import start

    state = tmp_path / "state"
    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    images: list[str] = []
    for round_ in range(2):
        with start(state) as handle:
            monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", handle.endpoint)
            monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", handle.token)
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", handle.endpoint)
            if round_ == 0:
                creds = bearer_credentials(handle.token)
                storage.Client(project=PROJECT, credentials=creds).create_bucket("staging-bucket")
            uri = cloud_build.upload_source(
                _app(tmp_path) if round_ == 0 else tmp_path / "app",
                "gs://staging-bucket",
                "tiny",
                PROJECT,
                base_image="python:3.11",
            )
            logs: list[str] = []
            images.append(
                cloud_build.build_image(
                    uri, "tiny", PROJECT, "us-central1", log=logs.append, poll_seconds=0.1
                )
            )
    assert images[0] == images[1]
    assert any("cache hit" in line for line in logs), logs


def test_interrupted_build_runs_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build the emulator was carrying out when it stopped (kill -9) runs on the next start."""
    import json

    from google.cloud import storage

    from hydra_vertex.emulator import start

    state = tmp_path / "state"
    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    with start(state) as handle:
        monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", handle.endpoint)
        monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", handle.token)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", handle.endpoint)
        creds = bearer_credentials(handle.token)
        storage.Client(project=PROJECT, credentials=creds).create_bucket("staging-bucket")
        uri = cloud_build.upload_source(
            _app(tmp_path), "gs://staging-bucket", "tiny", PROJECT, base_image="python:3.11"
        )
        image = cloud_build.build_image(uri, "tiny", PROJECT, "us-central1", poll_seconds=0.1)
    (record,) = (state / "cloudbuild" / "builds").glob("*.json")
    build = json.loads(record.read_text())
    build["status"] = "WORKING"
    for key in ("results", "finishTime"):
        build.pop(key)
    record.write_text(json.dumps(build))
    with start(state) as handle:
        monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", handle.endpoint)
        monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", handle.token)
        client = cloud_build.cloud_build_client()
        for _ in range(100):
            got = client.get_build(project_id=PROJECT, id=build["id"])
            if got.status.name == "SUCCESS":
                break
            time.sleep(0.05)
        assert got.status.name == "SUCCESS"
        assert got.results.images[0].digest == "sha256:" + image.rsplit(":", 1)[1]
