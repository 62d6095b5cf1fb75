"""The Cloud Build ``projects.builds`` subset that ``hydra_vertex.cloud_build`` uses through the
official ``google-cloud-build`` client (REST transport), carried out by the local builder.

Served: ``POST /v1/projects/{p}/builds`` (a long-running operation), ``GET .../builds/{id}``,
``GET .../builds`` (``filter`` with ``AND``-joined ``key="value"`` terms on ``status``, ``tags``,
``id`` and ``images``; newest first; ``pageSize``/``pageToken``), ``POST .../builds/{id}:cancel``,
the same under ``projects/{p}/locations/{l}/``, and the operation
``GET /v1/operations/build/{p}/{id}``.

A build runs in a background thread: the source tarball (``source.storageSource``) is read from the
emulator's storage root (where the Cloud Storage service keeps objects), unpacked into
``state_dir/cloudbuild/work/{id}`` (regular files and directories only: absolute names, ``..``,
links and devices fail the build), checked for a root ``Dockerfile`` (``docker build .`` needs one),
and built with :func:`hydra_vertex.images.build_local` under the name of each requested image (the
last path segment, without tag). Steps must be ``gcr.io/cloud-builders/docker`` ``build`` or
``push`` steps (the Dockerfile itself is not executed: the local image is the source snapshot).
``results.images[i]`` is ``{"name": <the requested image>, "digest": "sha256:<local digest>"}``;
``hydra_vertex.cloud_build`` turns that into ``hydra-vertex.local/<name>@sha256:<digest>`` on the
emulator, which the job runner resolves. A failure ends FAILURE with ``statusDetail`` naming the
cause, and the operation ends with an error (code 2, as Cloud Build's "Build failed").

Builds persist as ``state_dir/cloudbuild/builds/{id}.json`` (atomic); a build left QUEUED or
WORKING by a stopped emulator runs again on the next start. The log of each build is a file,
``state_dir/cloudbuild/logs/{id}.log``, given as ``logUrl`` (``file://``).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra_vertex import images
from hydra_vertex.emulator.router import ApiError, Request, Route, json_body
from hydra_vertex.emulator.store import Store, atomic_write_json
from hydra_vertex.errors import HydraVertexError

log = logging.getLogger("hydra_vertex.emulator.cloudbuild")

_VERBS = {"FAILURE": "failed", "CANCELLED": "cancelled", "TIMEOUT": "timed out"}
TERMINAL = ("SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED")
_BUILD_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
_META_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
_SERVICE = "google.devtools.cloudbuild.v1.CloudBuild"
_PROJECT_RE = re.compile(r"^[a-z][a-z0-9:.-]{0,62}$")
_LOCATION_RE = re.compile(r"^[a-z0-9-]+$")
_ID_RE = re.compile(r"^[0-9a-f-]{36}$")
_TERM_RE = re.compile(r'^\s*(?P<key>[a-z_]+)\s*=\s*(?:"(?P<q>[^"]*)"|(?P<v>[^\s"]+))\s*$')
_FILTER_KEYS = ("status", "tags", "id", "images", "project_id")
MAX_UNPACKED_BYTES = 2 * 1024**3


class BuildFailure(HydraVertexError):
    """A build cannot be carried out; the message goes to ``statusDetail``."""


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class CloudBuildService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.root / "cloudbuild"
        self._lock = threading.RLock()
        self._builds: dict[str, dict[str, Any]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._load()

    def routes(self) -> list[Route]:
        """Each call under ``projects/{project}`` and under ``projects/{project}/locations/{l}``,
        as Cloud Build's HTTP rules have them."""
        out = []
        for parent in ("/v1/projects/{project}", "/v1/projects/{project}/locations/{location}"):
            builds = f"{parent}/builds"
            out += [
                Route("POST", builds, self.create, f"{_SERVICE}.CreateBuild"),
                Route("GET", builds, self.list, f"{_SERVICE}.ListBuilds"),
                Route("GET", f"{builds}/{{build_id}}", self.get, f"{_SERVICE}.GetBuild"),
                Route(
                    "POST", f"{builds}/{{build_id}}:cancel", self.cancel, f"{_SERVICE}.CancelBuild"
                ),
            ]
        out.append(Route("GET", "/v1/operations/build/{project}/{build_id}", self.operation))
        return out

    # -- persistence -----------------------------------------------------------------------------
    def _path(self, build_id: str) -> Path:
        return self.root / "builds" / f"{build_id}.json"

    def _load(self) -> None:
        directory = self.root / "builds"
        if not directory.is_dir():
            return
        for path in sorted(directory.glob("*.json")):
            if path.is_symlink() or not _ID_RE.match(path.stem):
                continue
            try:
                build = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            self._builds[path.stem] = build
        for build_id, build in list(self._builds.items()):
            if build.get("status") not in TERMINAL:
                self._start(build_id)

    def _update(self, build_id: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            build = dict(self._builds[build_id], **fields)
            atomic_write_json(self._path(build_id), build)
            self._builds[build_id] = build
            return json.loads(json.dumps(build))

    def _get(self, project: str, build_id: str) -> dict[str, Any]:
        with self._lock:
            build = self._builds.get(build_id)
            if build is None or build.get("projectId") != project:
                raise ApiError(404, f"build {build_id} not found in project {project}")
            return json.loads(json.dumps(build))

    # -- handlers --------------------------------------------------------------------------------
    def create(self, request: Request, project: str, location: str = "") -> tuple[int, Any]:
        _check_parent(project, location)
        body = json_body(request.body)
        storage = (body.get("source") or {}).get("storageSource") or {}
        if not storage.get("bucket") or not storage.get("object"):
            raise ApiError(
                400,
                "build.source.storageSource.bucket and .object are required (the emulator "
                "builds from a source tarball in its Cloud Storage)",
            )
        if not body.get("steps"):
            raise ApiError(400, "build.steps: at least one step is required")
        build_id = str(uuid.uuid4())
        self.root.mkdir(parents=True, exist_ok=True)
        log_path = self.root / "logs" / f"{build_id}.log"
        build = {
            **body,
            "id": build_id,
            "name": f"projects/{project}/locations/global/builds/{build_id}",
            "projectId": project,
            "status": "QUEUED",
            "createTime": _now(),
            "logUrl": log_path.as_uri(),
            "logsBucket": "",
        }
        build.setdefault("timeout", "600s")
        with self._lock:
            self._builds[build_id] = build
            atomic_write_json(self._path(build_id), build)
        self._start(build_id)
        return 200, self._operation(build)

    def get(
        self, request: Request, project: str, build_id: str, location: str = ""
    ) -> tuple[int, Any]:
        return 200, self._get(project, build_id)

    def list(self, request: Request, project: str, location: str = "") -> tuple[int, Any]:
        _check_parent(project, location)
        terms = _parse_filter(request.query.get("filter", ""))
        with self._lock:
            builds = [b for b in self._builds.values() if b.get("projectId") == project]
            builds = json.loads(json.dumps(builds))
        builds = [b for b in builds if all(_matches(b, k, v) for k, v in terms)]
        builds.sort(key=lambda b: (b.get("createTime", ""), b["id"]), reverse=True)
        try:
            size = max(1, min(int(request.query.get("pageSize") or 100), 1000))
            offset = int(request.query.get("pageToken") or 0)
        except ValueError:
            raise ApiError(400, "pageSize and pageToken must be integers") from None
        out: dict[str, Any] = {"builds": builds[offset : offset + size]}
        if offset + size < len(builds):
            out["nextPageToken"] = str(offset + size)
        return 200, out

    def cancel(
        self, request: Request, project: str, build_id: str, location: str = ""
    ) -> tuple[int, Any]:
        build = self._get(project, build_id)
        with self._lock:
            if build["status"] not in TERMINAL:
                build = self._update(
                    build_id, status="CANCELLED", finishTime=_now(), statusDetail="cancelled"
                )
        return 200, build

    def operation(self, request: Request, project: str, build_id: str) -> tuple[int, Any]:
        return 200, self._operation(self._get(project, build_id))

    @staticmethod
    def _operation(build: dict[str, Any]) -> dict[str, Any]:
        op: dict[str, Any] = {
            "name": f"operations/build/{build['projectId']}/{build['id']}",
            "metadata": {"@type": _META_TYPE, "build": build},
            "done": build["status"] in TERMINAL,
        }
        if build["status"] == "SUCCESS":
            op["response"] = {"@type": _BUILD_TYPE, **build}
        elif op["done"]:
            detail = build.get("statusDetail") or "check the build log"
            op["error"] = {
                "code": 1 if build["status"] == "CANCELLED" else 2,
                "message": f"Build {_VERBS.get(build['status'], build['status'])}: {detail} "
                f"(log: {build['logUrl']})",
            }
        return op

    # -- execution -------------------------------------------------------------------------------
    def _start(self, build_id: str) -> None:
        thread = threading.Thread(
            target=self._execute, args=(build_id,), name=f"cloudbuild-{build_id[:8]}", daemon=True
        )
        self._threads[build_id] = thread
        thread.start()

    def _execute(self, build_id: str) -> None:
        build = self._update(build_id, status="WORKING", startTime=_now())
        log_path = Path(build["logUrl"][len("file://") :])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        work = self.root / "work" / build_id
        lines: list[str] = []

        def say(line: str) -> None:
            lines.append(line)
            with open(log_path, "a") as f:
                f.write(line + "\n")

        try:
            results = self._build(build, work, say)
        except BuildFailure as e:
            say(f"ERROR: {e}")
            self._finish(build_id, status="FAILURE", statusDetail=str(e))
        except Exception as e:  # the build must end, whatever went wrong
            log.exception("build %s", build_id)
            say(f"INTERNAL ERROR: {e!r}")
            self._finish(build_id, status="INTERNAL_ERROR", statusDetail=f"internal error: {e!r}")
        else:
            say("DONE")
            self._finish(build_id, status="SUCCESS", results=results)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _finish(self, build_id: str, **fields: Any) -> None:
        with self._lock:
            if self._builds[build_id].get("status") == "CANCELLED":
                return
            self._update(build_id, finishTime=_now(), **fields)

    def _build(
        self, build: dict[str, Any], work: Path, say: Callable[[str], None]
    ) -> dict[str, Any]:
        storage = build["source"]["storageSource"]
        uri = f"gs://{storage['bucket']}/{storage['object']}"
        try:
            tarball = self.store.local_path(uri)
        except HydraVertexError as e:
            raise BuildFailure(f"source {uri}: {e}") from None
        inside = tarball.resolve().is_relative_to(self.store.storage_root.resolve())
        if not inside or tarball.is_symlink() or not tarball.is_file():
            raise BuildFailure(f"source {uri} does not exist in the emulator's Cloud Storage")
        names = _image_names(build)
        _check_steps(build.get("steps") or [])
        say(f"Fetching {uri}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _unpack(tarball, work, uri)
        if not (work / "Dockerfile").is_file():
            raise BuildFailure(
                f"source {uri} has no Dockerfile at its root ('docker build .' needs one)"
            )
        built = []
        for image, name in names:
            say(f"Building {image} (local image {name})")
            try:
                local = images.build_local(work, name)
            except images.ImageError as e:
                raise BuildFailure(str(e)) from None
            say(f"{image}: {local.ref}{' (cached)' if local.cached else ''}")
            built.append({"name": image, "digest": f"sha256:{local.digest}"})
        return {"images": built, "buildStepImages": ["" for _ in build.get("steps") or []]}


def _check_parent(project: str, location: str) -> None:
    if not _PROJECT_RE.match(project) or (location and not _LOCATION_RE.match(location)):
        raise ApiError(404, f"no project {project!r} (location {location!r}) in the emulator")


def _image_names(build: dict[str, Any]) -> list[tuple[str, str]]:
    """(requested image, local image name) for each of ``build.images``."""
    requested = build.get("images") or []
    if not requested:
        raise BuildFailure("build.images is empty: the emulator builds the images it is asked for")
    out = []
    for image in requested:
        last = str(image).split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        if not images._NAME_RE.match(last):
            raise BuildFailure(
                f"image {image!r}: its name {last!r} must match {images._NAME_RE.pattern}"
            )
        out.append((str(image), last))
    return out


def _check_steps(steps: list[dict[str, Any]]) -> None:
    for i, step in enumerate(steps):
        name, args = step.get("name", ""), step.get("args") or []
        if (
            not name.endswith("cloud-builders/docker")
            or not args
            or args[0]
            not in (
                "build",
                "push",
            )
        ):
            raise BuildFailure(
                f"step {i} ({name} {' '.join(args)}) is not supported by the emulator: only "
                "gcr.io/cloud-builders/docker 'build' and 'push' steps are"
            )


def _unpack(tarball: Path, dest: Path, uri: str) -> None:
    """Extract regular files and directories only; anything else fails the build."""
    total = 0
    try:
        with tarfile.open(tarball, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = m.name.split("/")
                if m.name.startswith("/") or ".." in parts or "\0" in m.name:
                    raise BuildFailure(f"source {uri}: unsafe path {m.name!r} in the tarball")
                if not (m.isfile() or m.isdir()):
                    raise BuildFailure(
                        f"source {uri}: {m.name!r} is a link or special file (only regular "
                        "files and directories are accepted)"
                    )
                total += m.size
                if total > MAX_UNPACKED_BYTES:
                    raise BuildFailure(f"source {uri} unpacks to more than {MAX_UNPACKED_BYTES}")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BuildFailure(f"source {uri} is not a readable .tar.gz: {e}") from None


def _parse_filter(text: str) -> list[tuple[str, str]]:
    if not text.strip():
        return []
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        m = _TERM_RE.match(part)
        if not m or m["key"] not in _FILTER_KEYS:
            raise ApiError(
                400,
                f'filter term {part!r} is not supported by the emulator: use key="value" '
                f"terms joined with AND, key one of {', '.join(_FILTER_KEYS)}",
            )
        terms.append((m["key"], m["q"] if m["q"] is not None else m["v"]))
    return terms


def _matches(build: dict[str, Any], key: str, value: str) -> bool:
    if key == "tags":
        return value in (build.get("tags") or [])
    if key == "images":
        return value in (build.get("images") or [])
    if key == "project_id":
        return bool(build.get("projectId") == value)
    return bool(build.get(key) == value)
