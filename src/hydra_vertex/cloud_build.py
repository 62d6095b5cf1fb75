"""The Google Cloud path of the build step: a source tarball in Cloud Storage, built by Cloud Build.

The tarball holds the same files the local builder snapshots (``images.snapshot_files``:
``.gcloudignore``, else ``.dockerignore``, else ``.gitignore``, never ``.git/``, ``outputs/`` ...),
written reproducibly (sorted, mtime 0, uid/gid 0, GNU format, gzip mtime 0), so an unchanged source
uploads to the same object. Its digest names the object
(``{staging_bucket}/sources/{name}-{digest}.tar.gz``) and tags the build (``src-{digest}``): a
successful build with that tag and the same image is a cache hit. The image returned is pinned by
digest (``{region}-docker.pkg.dev/{project}/{repository}/{name}@sha256:...``).

An app without a ``Dockerfile`` gets a generated one, ``FROM`` the hydra-vertex components image
(which holds hydra-vertex and its shim); it is part of the digest, so a new base image rebuilds.

Only the official clients are used (``google-cloud-storage``, ``google-cloud-build``), imported
inside the functions. When ``HYDRA_VERTEX_EMULATOR`` is set
(:func:`hydra_vertex.vertex.resolve_endpoint`) both go to the emulator with its bearer token: Cloud
Build over REST, Cloud Storage through ``STORAGE_EMULATOR_HOST``, which is set to the emulator's
endpoint when unset (a different value is refused: the emulator's builds read sources from its own
storage). The emulator's builds are local images, so the pinned reference is then
``hydra-vertex.local/{name}@sha256:...`` (what the emulator's job runner resolves) instead of an
Artifact Registry one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hydra_vertex import __version__
from hydra_vertex.images import _NAME_RE, IMAGE_HOST, ImageError, _files, source_digest

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud.devtools.cloudbuild_v1 import Build, CloudBuildClient
    from google.cloud.storage import Client as StorageClient

__all__ = [
    "CloudBuildError",
    "build_components_image",
    "build_image",
    "build_request",
    "cloud_build_client",
    "source_tarball",
    "storage_client",
    "upload_source",
]

DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
BUILD_TIMEOUT_SECONDS = 1800  # Cloud Build's own default (10 min) is short for a pip install
_SOURCE_RE = re.compile(
    r"^gs://(?P<bucket>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])/"
    r"(?P<object>(?:[^\n]*/)?(?P<name>[a-z0-9][a-z0-9._-]*)-(?P<digest>[0-9a-f]{64})\.tar\.gz)$"
)
_BUCKET_RE = re.compile(
    r"^gs://(?P<bucket>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:/(?P<prefix>.*))?$"
)
_PROJECT_RE = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]+(?:-[a-z]+[0-9]+)?$")
_REPOSITORY_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class CloudBuildError(ImageError):
    """An image cannot be built on Google Cloud (bad input, or the build failed)."""


def _check(value: str, pattern: re.Pattern[str], what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise CloudBuildError(f"{what} {value!r} must match {pattern.pattern} ({rule})")
    return value


def _dockerfile(source: Path, base_image: str) -> bytes | None:
    """The generated Dockerfile for a source without one, else None."""
    if (source / "Dockerfile").is_file():
        return None
    if not base_image or any(c.isspace() for c in base_image):
        raise CloudBuildError(
            f"base image {base_image!r} must be a non-empty image reference without spaces: "
            f"{source} has no Dockerfile, so one is generated FROM the hydra-vertex components "
            "image (see docs/vertex.md, 'build-components-image')"
        )
    lines = [f"FROM {base_image}", "WORKDIR /app", "COPY . /app"]
    if (source / "requirements.txt").is_file():
        lines.append("RUN pip install --no-cache-dir -r requirements.txt")
    return ("\n".join(lines) + "\n").encode("utf-8")


def source_tarball(source_dir: Path, dest: Path, base_image: str) -> str:
    """Write a reproducible ``.tar.gz`` of ``source_dir`` to ``dest``; return its source digest.

    The files are those the local builder takes; a ``Dockerfile`` ``FROM base_image`` is added when
    the source has none, and then it counts in the digest.
    """
    src = Path(source_dir).resolve()
    if not src.is_dir():
        raise CloudBuildError(f"image source {str(source_dir)!r} is not a directory")
    generated = _dockerfile(src, base_image)
    digest = source_digest(src)
    entries: dict[str, tuple[int, bytes]] = {
        p.relative_to(src).as_posix(): (0o755 if os.access(p, os.X_OK) else 0o644, p.read_bytes())
        for p in _files(src)
    }
    if generated is not None:
        entries["Dockerfile"] = (0o644, generated)
        digest = hashlib.sha256(f"{digest}\0Dockerfile\0".encode() + generated).hexdigest()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for rel in sorted(entries):
            mode, data = entries[rel]
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return digest


def _bucket(staging_bucket: str) -> tuple[str, str]:
    m = _BUCKET_RE.match(staging_bucket) if isinstance(staging_bucket, str) else None
    if not m:
        raise CloudBuildError(
            f"staging bucket {staging_bucket!r} must be a gs://BUCKET[/PREFIX] URI "
            "(check 'vertex.staging_bucket' or --staging-bucket)"
        )
    return m["bucket"], (m["prefix"] or "").strip("/")


def storage_client(project: str) -> StorageClient:
    """A Cloud Storage client: the emulator (with its token) when one is set, else Google's."""
    from google.cloud import storage

    from hydra_vertex.vertex import bearer_credentials, resolve_endpoint

    resolved = resolve_endpoint()
    if not resolved.is_emulator:
        return storage.Client(project=project)
    endpoint = str(resolved.api_endpoint)
    host = os.environ.setdefault("STORAGE_EMULATOR_HOST", endpoint)
    if host.rstrip("/") != endpoint:
        raise CloudBuildError(
            f"STORAGE_EMULATOR_HOST={host!r} but HYDRA_VERTEX_EMULATOR={endpoint!r}: the "
            "emulator's Cloud Build reads sources from the emulator's own Cloud Storage, so "
            "unset STORAGE_EMULATOR_HOST or set it to the same endpoint"
        )
    return storage.Client(project=project, credentials=bearer_credentials(resolved.token))


def upload_source(
    source_dir: Path, staging_bucket: str, name: str, project: str, base_image: str
) -> str:
    """Upload the source tarball to ``{staging_bucket}/sources/{name}-{digest}.tar.gz`` (once)."""
    _check(name, _NAME_RE, "image name", "lowercase letters, digits, . _ -")
    _check(project, _PROJECT_RE, "project", "a Google Cloud project id")
    bucket_name, prefix = _bucket(staging_bucket)
    with tempfile.TemporaryDirectory(prefix="hydra-vertex-src-") as tmp:
        tarball = Path(tmp) / "source.tar.gz"
        digest = source_tarball(source_dir, tarball, base_image)
        obj = "/".join(p for p in (prefix, "sources", f"{name}-{digest}.tar.gz") if p)
        blob = storage_client(project).bucket(bucket_name).blob(obj)
        if not blob.exists():
            blob.upload_from_filename(str(tarball), content_type="application/gzip")
    return f"gs://{bucket_name}/{obj}"


def _parse_source(source_uri: str) -> tuple[str, str, str]:
    """``(bucket, object, digest)`` of a source URI written by :func:`upload_source`."""
    m = _SOURCE_RE.match(source_uri) if isinstance(source_uri, str) else None
    if not m:
        raise CloudBuildError(
            f"source URI {source_uri!r} must be gs://BUCKET/[PATH/]NAME-<64 hex digest>.tar.gz "
            "(as upload_source writes it)"
        )
    return m["bucket"], m["object"], m["digest"]


def _image_tag(project: str, region: str, repository: str, name: str, tag: str) -> str:
    _check(project, _PROJECT_RE, "project", "a Google Cloud project id")
    _check(region, _REGION_RE, "region", "a Google Cloud region such as us-central1")
    _check(repository, _REPOSITORY_RE, "repository", "an Artifact Registry repository id")
    _check(name, _NAME_RE, "image name", "lowercase letters, digits, . _ -")
    _check(tag, _TAG_RE, "image tag", "a Docker tag")
    return f"{region}-docker.pkg.dev/{project.replace(':', '/')}/{repository}/{name}:{tag}"


def _request(source_uri: str, image: str) -> Build:
    from google.cloud.devtools import cloudbuild_v1
    from google.protobuf import duration_pb2

    bucket, obj, digest = _parse_source(source_uri)
    return cloudbuild_v1.Build(
        source=cloudbuild_v1.Source(
            storage_source=cloudbuild_v1.StorageSource(bucket=bucket, object_=obj)
        ),
        steps=[cloudbuild_v1.BuildStep(name=DOCKER_BUILDER, args=["build", "-t", image, "."])],
        images=[image],
        tags=["hydra-vertex", f"src-{digest}"],
        timeout=duration_pb2.Duration(seconds=BUILD_TIMEOUT_SECONDS),
    )


def build_request(
    source_uri: str, name: str, project: str, region: str, repository: str = "hydra-vertex"
) -> Build:
    """The Cloud Build request: ``docker build`` of the source, pushed as
    ``{region}-docker.pkg.dev/{project}/{repository}/{name}:src-<digest[:16]>``."""
    digest = _parse_source(source_uri)[2]
    return _request(source_uri, _image_tag(project, region, repository, name, f"src-{digest[:16]}"))


def cloud_build_client() -> CloudBuildClient:
    """A Cloud Build client: the emulator over REST when one is configured, else Google's."""
    from google.cloud.devtools import cloudbuild_v1

    from hydra_vertex.vertex import bearer_credentials, resolve_endpoint

    resolved = resolve_endpoint()
    if resolved.is_emulator:
        return cloudbuild_v1.CloudBuildClient(
            transport="rest",
            client_options={"api_endpoint": resolved.api_endpoint},
            credentials=bearer_credentials(resolved.token),
        )
    return cloudbuild_v1.CloudBuildClient()


def _pinned(build: Build, image: str, local: bool = False) -> str | None:
    """``repo/name@sha256:…`` for ``image`` among a build's pushed images, else None; with
    ``local`` (the emulator's builds) ``hydra-vertex.local/name@sha256:…``."""
    for built in build.results.images:
        if built.name == image and built.digest:
            repo = image.rsplit(":", 1)[0]
            if local:
                repo = f"{IMAGE_HOST}/{repo.rsplit('/', 1)[-1]}"
            return f"{repo}@{built.digest}"
    return None


def _run_build(
    request: Build,
    project: str,
    log: Callable[[str], None],
    poll_seconds: float,
    timeout_seconds: float,
) -> str:
    from google.api_core import exceptions

    from hydra_vertex.vertex import resolve_endpoint

    local = resolve_endpoint().is_emulator
    image = request.images[0]
    digest_tag = next(t for t in request.tags if t.startswith("src-"))
    client = cloud_build_client()
    for previous in client.list_builds(
        project_id=project, filter=f'tags="{digest_tag}" AND status="SUCCESS"'
    ):
        pinned = _pinned(previous, image, local)
        if pinned:
            log(f"Cloud Build: cache hit, build {previous.id} already pushed {pinned}")
            return pinned

    operation = client.create_build(project_id=project, build=request)
    started = operation.metadata.build if operation.metadata else None
    build_id = started.id if started else "?"
    log_url = started.log_url if started else "?"
    log(f"Cloud Build: building {image} (build {build_id}, logs: {log_url})")
    deadline = time.monotonic() + timeout_seconds
    try:
        while not operation.done():
            if time.monotonic() > deadline:
                raise CloudBuildError(
                    f"Cloud Build build {build_id} of {image} did not finish within "
                    f"{timeout_seconds:.0f}s; logs: {log_url}"
                )
            time.sleep(poll_seconds)
        build = operation.result()
    except exceptions.GoogleAPICallError as e:
        raise CloudBuildError(
            f"Cloud Build build {build_id} of {image} failed: {e.message}; logs: {log_url}"
        ) from e
    pinned = _pinned(build, image, local)
    if pinned is None:
        raise CloudBuildError(
            f"Cloud Build build {build.id or build_id} ended {build.status.name} without pushing "
            f"{image}; logs: {build.log_url or log_url}"
        )
    log(f"Cloud Build: pushed {pinned}")
    return pinned


def build_image(
    source_uri: str,
    name: str,
    project: str,
    region: str,
    repository: str = "hydra-vertex",
    *,
    log: Callable[[str], None] = print,
    poll_seconds: float = 5.0,
    timeout_seconds: float = BUILD_TIMEOUT_SECONDS + 600,
) -> str:
    """Build ``source_uri`` with Cloud Build (or reuse a successful build of the same source and
    image); return the pushed image pinned by digest."""
    request = build_request(source_uri, name, project, region, repository)
    return _run_build(request, project, log, poll_seconds, timeout_seconds)


def _repo_root() -> Path:
    import hydra_vertex

    root = Path(hydra_vertex.__file__).resolve().parents[2]
    if not ((root / "Dockerfile").is_file() and (root / "pyproject.toml").is_file()):
        raise CloudBuildError(
            f"the components image is built from a hydra-vertex source checkout, but {root} "
            "(two levels above the installed package) holds no Dockerfile and pyproject.toml: "
            "clone the repository and install it with 'pip install -e .[cloud]'"
        )
    return root


def build_components_image(
    project: str,
    region: str,
    staging_bucket: str,
    repository: str = "hydra-vertex",
    tag: str = __version__,
    *,
    log: Callable[[str], None] = print,
) -> str:
    """Build and push ``{region}-docker.pkg.dev/{project}/{repository}/components:{tag}`` (tag:
    the hydra-vertex version) from this source checkout; return it pinned by digest."""
    image = _image_tag(project, region, repository, "components", tag)
    uri = upload_source(_repo_root(), staging_bucket, "components", project, base_image="")
    return _run_build(_request(uri, image), project, log, 5.0, BUILD_TIMEOUT_SECONDS + 600)
