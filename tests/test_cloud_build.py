"""The pure parts of the Cloud Build path: the source tarball and the build request.

The network-bound part (upload, create_build, the cache lookup) runs against the local emulator in
its own tests; nothing here talks to a Google client.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest

from hydra_vertex import images
from hydra_vertex.cloud_build import (
    CloudBuildError,
    build_request,
    source_tarball,
    upload_source,
)
from hydra_vertex.images import ImageError

BASE = "us-central1-docker.pkg.dev/my-project/hydra-vertex/components@sha256:" + "b" * 64
DIGEST = "0123456789abcdef" * 4
URI = f"gs://my-bucket/staging/sources/digits-{DIGEST}.tar.gz"
REPO_ROOT = Path(__file__).resolve().parents[1]


def make_app(root: Path, *, dockerfile: str | None = None, requirements: bool = False) -> Path:
    app = root / "app"
    (app / "conf").mkdir(parents=True)
    (app / "train.py").write_text("print('train')\n")
    (app / "conf" / "config.yaml").write_text("lr: 0.1\n")
    (app / "run.sh").write_text("#!/bin/sh\nexec python train.py\n")
    (app / "run.sh").chmod(0o755)
    if dockerfile is not None:
        (app / "Dockerfile").write_text(dockerfile)
    if requirements:
        (app / "requirements.txt").write_text("scikit-learn\n")
    return app


def members(tarball: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tarball, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def read(tarball: Path, name: str) -> str:
    with tarfile.open(tarball, "r:gz") as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read().decode()


def test_same_source_gives_identical_bytes_and_digest(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    d1 = source_tarball(app, tmp_path / "a.tar.gz", BASE)
    os.utime(app / "train.py", (1_000_000, 1_000_000))  # mtimes do not count
    (app / "conf" / "config.yaml").chmod(0o600)  # nor the permission bits beyond executable
    d2 = source_tarball(app, tmp_path / "b.tar.gz", BASE)
    assert d1 == d2
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


def test_a_changed_file_changes_the_digest(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    before = source_tarball(app, tmp_path / "a.tar.gz", BASE)
    (app / "train.py").write_text("print('train harder')\n")
    assert source_tarball(app, tmp_path / "b.tar.gz", BASE) != before


def test_entries_are_sorted_and_normalised(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    tarball = tmp_path / "a.tar.gz"
    source_tarball(app, tarball, BASE)
    raw = tarball.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime
    assert b"PaxHeader" not in gzip.decompress(raw)
    found = members(tarball)
    assert list(found) == sorted(found)
    for m in found.values():
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.isfile() and not m.pax_headers
    assert found["run.sh"].mode == 0o755
    assert found["train.py"].mode == 0o644


def test_generated_dockerfile_when_missing(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    tarball = tmp_path / "a.tar.gz"
    digest = source_tarball(app, tarball, BASE)
    dockerfile = read(tarball, "Dockerfile")
    assert dockerfile.splitlines() == [f"FROM {BASE}", "WORKDIR /app", "COPY . /app"]
    assert not (app / "Dockerfile").exists()  # the source is left alone
    # The generated Dockerfile counts: a new base image is a new source.
    assert source_tarball(app, tmp_path / "b.tar.gz", BASE.replace("b" * 64, "c" * 64)) != digest
    assert digest != images.source_digest(app)


def test_generated_dockerfile_installs_requirements(tmp_path: Path) -> None:
    app = make_app(tmp_path, requirements=True)
    tarball = tmp_path / "a.tar.gz"
    source_tarball(app, tarball, BASE)
    assert read(tarball, "Dockerfile").splitlines()[-1] == (
        "RUN pip install --no-cache-dir -r requirements.txt"
    )
    assert "requirements.txt" in members(tarball)


def test_user_dockerfile_is_kept(tmp_path: Path) -> None:
    own = "FROM python:3.12-slim\nCOPY . /srv\n"
    app = make_app(tmp_path, dockerfile=own)
    tarball = tmp_path / "a.tar.gz"
    digest = source_tarball(app, tarball, BASE)
    assert read(tarball, "Dockerfile") == own
    # Same digest as the local builder, and the base image plays no part.
    assert digest == images.source_digest(app)
    assert source_tarball(app, tmp_path / "b.tar.gz", "other/base:1") == digest


def test_ignored_files_are_left_out(tmp_path: Path) -> None:
    app = make_app(tmp_path, dockerfile="FROM scratch\n")
    for junk in (".git/HEAD", "__pycache__/train.cpython-311.pyc", "outputs/run/log.txt",
                 ".venv/bin/python", "wandb/run/x", ".hydra-vertex/state.json", "conf/x.pyc",
                 "app.egg-info/PKG-INFO"):
        (app / junk).parent.mkdir(parents=True, exist_ok=True)
        (app / junk).write_text("junk\n")
    digest = source_tarball(app, tmp_path / "a.tar.gz", BASE)
    assert sorted(members(tmp_path / "a.tar.gz")) == [
        "Dockerfile", "conf/config.yaml", "run.sh", "train.py"
    ]
    assert digest == images.source_digest(app)


def test_repo_root_tarball_is_the_components_image_context(tmp_path: Path) -> None:
    tarball = tmp_path / "repo.tar.gz"
    source_tarball(REPO_ROOT, tarball, "")  # the repo has its own Dockerfile: no base image needed
    names = members(tarball)
    assert {"Dockerfile", "pyproject.toml", "README.md", "src/hydra_vertex/cloud_build.py"} <= set(
        names
    )
    assert not any(n.startswith((".venv/", ".git/")) for n in names)
    assert "FROM python:3.11-slim" in read(tarball, "Dockerfile").splitlines()


def test_build_request_fields() -> None:
    build = build_request(URI, "digits", "my-project", "europe-west4", repository="apps")
    tag = f"europe-west4-docker.pkg.dev/my-project/apps/digits:src-{DIGEST[:16]}"
    assert build.source.storage_source.bucket == "my-bucket"
    assert build.source.storage_source.object_ == f"staging/sources/digits-{DIGEST}.tar.gz"
    assert len(build.steps) == 1
    assert build.steps[0].name == "gcr.io/cloud-builders/docker"
    assert list(build.steps[0].args) == ["build", "-t", tag, "."]
    assert list(build.images) == [tag]
    assert f"src-{DIGEST}" in build.tags
    assert build.timeout.total_seconds() >= 1800


def test_build_request_default_repository_and_bucket_root() -> None:
    build = build_request(f"gs://b-1/sources/x-{DIGEST}.tar.gz", "x", "my-project", "us-central1")
    assert list(build.images) == [
        f"us-central1-docker.pkg.dev/my-project/hydra-vertex/x:src-{DIGEST[:16]}"
    ]
    assert build.source.storage_source.object_ == f"sources/x-{DIGEST}.tar.gz"


@pytest.mark.parametrize(
    ("args", "value", "rule"),
    [
        pytest.param((f"s3://my-bucket/sources/digits-{DIGEST}.tar.gz", "digits", "my-project", "us-central1"),
                     "s3://", "gs://BUCKET", id="not-gs"),
        pytest.param(("gs://my-bucket/sources/digits.tar.gz", "digits", "my-project", "us-central1"),
                     "digits.tar.gz", "64 hex digest", id="no-digest"),
        pytest.param((f"gs://my-bucket/sources/digits-{DIGEST}.zip", "digits", "my-project", "us-central1"),
                     ".zip", ".tar.gz", id="not-tarball"),
        pytest.param((f"gs://My_Bucket/sources/digits-{DIGEST}.tar.gz", "digits", "my-project", "us-central1"),
                     "My_Bucket", "gs://BUCKET", id="bad-bucket"),
        pytest.param((URI, "Digits", "my-project", "us-central1"), "'Digits'", "image name", id="upper-name"),
        pytest.param((URI, "dig its", "my-project", "us-central1"), "'dig its'", "image name", id="space-name"),
        pytest.param((URI, "digits", "My Project", "us-central1"), "'My Project'", "project", id="bad-project"),
        pytest.param((URI, "digits", "my-project", "US Central"), "'US Central'", "region", id="bad-region"),
        pytest.param((URI, "digits", "my-project", "us-central1", "Repo!"), "'Repo!'", "repository", id="bad-repo"),
    ],
)
def test_build_request_rejects_bad_input(args: tuple[str, ...], value: str, rule: str) -> None:
    with pytest.raises(ImageError) as err:
        build_request(*args)
    assert value in str(err.value)
    assert rule in str(err.value)


def test_missing_source_and_missing_base_image_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CloudBuildError, match="is not a directory"):
        source_tarball(tmp_path / "nope", tmp_path / "a.tar.gz", BASE)
    app = make_app(tmp_path)
    with pytest.raises(CloudBuildError, match=r"base image '' .*no Dockerfile"):
        source_tarball(app, tmp_path / "a.tar.gz", "")


@pytest.mark.parametrize(
    ("bucket", "name", "project", "value"),
    [
        pytest.param("my-bucket", "digits", "my-project", "'my-bucket'", id="no-scheme"),
        pytest.param("gs://", "digits", "my-project", "'gs://'", id="no-bucket"),
        pytest.param("gs://my-bucket", "Digits", "my-project", "'Digits'", id="bad-name"),
        pytest.param("gs://my-bucket", "digits", "p", "'p'", id="bad-project"),
    ],
)
def test_upload_source_checks_before_any_call(
    tmp_path: Path, bucket: str, name: str, project: str, value: str
) -> None:
    with pytest.raises(CloudBuildError) as err:
        upload_source(make_app(tmp_path), bucket, name, project, BASE)
    assert value in str(err.value)
