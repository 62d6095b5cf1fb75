"""The HTTP server: one response adapter over the routes table, security checks before any handler.

Stdlib ``ThreadingHTTPServer`` keeps the in-process start/stop simple and dependency-free.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hydra_vertex import images
from hydra_vertex.emulator import console, pipelines, routes, schedules
from hydra_vertex.emulator.routes import ApiError
from hydra_vertex.emulator.services import Raw, Request, Service
from hydra_vertex.emulator.store import Store, valid_id
from hydra_vertex.emulator.tuning import (
    TERMINAL_JOB_STATES,
    CustomJobRunner,
    JobRunner,
    Launcher,
    StoredJobRunner,
    TuningJobRunner,
    now,
)

log = logging.getLogger("hydra_vertex.emulator")
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # Cloud Storage uploads (/upload/...): source tarballs


def body_limit(path: str) -> int:
    return MAX_UPLOAD_BYTES if path.startswith("/upload/") else MAX_BODY_BYTES


_JSON = "application/json; charset=UTF-8"
DEFAULT_PAGE_SIZE = 100
_RUNNERS: dict[str, type[JobRunner]] = {
    "customJobs": CustomJobRunner,
    "hyperparameterTuningJobs": TuningJobRunner,
}


class Emulator:
    """State, runners and handlers. ``serve`` binds it to a socket."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        image_map: dict[str, str] | None = None,
        token: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.store = Store(state_dir)
        self.image_map = {k: Path(v).resolve() for k, v in (image_map or {}).items()}
        self.token = token if token is not None else secrets.token_urlsafe(32)
        self.seed = seed
        self.launcher = Launcher(self.store, self.resolve_image)
        self.runners: dict[str, StoredJobRunner] = {}
        self.scheduler: schedules.Scheduler | None = None
        self._lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        self.endpoint = ""
        self.port = 0
        self.allowed_hosts: set[str] = set()
        self.any_interface = False
        self.services: list[Service] = []
        from hydra_vertex.emulator.cloudbuild import CloudBuildService
        from hydra_vertex.emulator.gcs import GcsService

        self.services += [GcsService(self.store), CloudBuildService(self.store)]
        from hydra_vertex.emulator.registry import RegistryService  # the KFP template registry

        self.services.append(RegistryService(self.store))

    # -- images ----------------------------------------------------------------------------------
    def resolve_image(self, uri: str) -> Path | None:
        if uri in self.image_map:
            return self.image_map[uri]
        bare = uri.split("@", 1)[0]
        if ":" in bare.rsplit("/", 1)[-1]:
            bare = bare.rsplit(":", 1)[0]
        if bare in self.image_map:
            return self.image_map[bare]
        return images.resolve_local(uri)

    # -- runners ---------------------------------------------------------------------------------
    def resume(self) -> None:
        """Restart runners for every unfinished job (after a restart), and the scheduler."""
        for collection in _RUNNERS:
            for job_id, rec in self.store.items(collection):
                if rec["resource"].get("state") not in TERMINAL_JOB_STATES:
                    self._run(collection, job_id)
        for job_id, rec in self.store.items(pipelines.COLLECTION):
            if rec["resource"].get("state") not in pipelines.TERMINAL:
                self._run(pipelines.COLLECTION, job_id)
        self.scheduler = schedules.Scheduler(self.store, self.create_pipeline_run)
        self.scheduler.start()

    def _run(self, collection: str, job_id: str) -> None:
        with self._lock:
            runner: StoredJobRunner
            if collection == pipelines.COLLECTION:
                runner = pipelines.PipelineRunner(self.store, job_id, self.endpoint, self.token)
            else:
                runner = _RUNNERS[collection](self.store, self.launcher, job_id)
            self.runners[f"{collection}/{job_id}"] = runner
            runner.start()

    def shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop_event.set()
            self.scheduler.join(timeout=10)
        for runner in list(self.runners.values()):
            runner.stop_event.set()
        for runner in list(self.runners.values()):
            runner.join(timeout=30)
        self.store.close()

    # -- handlers --------------------------------------------------------------------------------
    def create(
        self,
        project: str,
        location: str,
        collection: str,
        body: bytes,
        query: dict[str, str] | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        msg = routes.parse_message(collection, body)
        data = routes.to_proto_json(collection, json.loads(body.decode()), ints=False)
        parent = f"projects/{project}/locations/{location}"
        if collection == pipelines.COLLECTION:
            return self.create_pipeline_run(
                parent, data, (query or {}).get("pipelineJobId", ""), ""
            )
        if collection == schedules.COLLECTION:
            return self._create_schedule(parent, data)
        self._validate(collection, msg)
        job_id = self.store.new_id(collection)
        stamp = now()
        data.update(
            name=f"projects/{project}/locations/{location}/{collection}/{job_id}",
            state="JOB_STATE_PENDING",
            createTime=stamp,
            updateTime=stamp,
        )
        for output_only in ("startTime", "endTime", "error", "trials", "webAccessUris"):
            data.pop(output_only, None)
        labels = data.get("labels", {})
        seed = labels.get("hydra-vertex-seed", self.seed)
        internal = {"seed": int(seed) if seed is not None else secrets.randbelow(2**31)}
        self.store.put(collection, job_id, {"resource": data, "internal": internal})
        self._run(collection, job_id)
        return data

    def create_pipeline_run(
        self, parent: str, data: dict[str, Any], job_id: str, schedule: str
    ) -> dict[str, Any]:
        """Create and start a pipeline job (from a request, or fired by a schedule)."""
        pipelines.validate(data)
        if job_id:
            if not valid_id(job_id):
                raise ApiError(
                    400,
                    f"pipeline_job_id {job_id!r} must be 1-128 lowercase letters, digits or "
                    "hyphens, starting with a letter or digit",
                )
            if self.store.get(pipelines.COLLECTION, job_id) is not None:
                raise ApiError(409, f"pipeline job {job_id!r} already exists")
        else:
            job_id = self.store.new_id(pipelines.COLLECTION)
        stamp = now()
        data.update(
            name=f"{parent}/pipelineJobs/{job_id}",
            state="PIPELINE_STATE_PENDING",
            createTime=stamp,
            updateTime=stamp,
        )
        for output_only in ("startTime", "endTime", "error", "jobDetail"):
            data.pop(output_only, None)
        if schedule:
            data["scheduleName"] = schedule
        self.store.put(pipelines.COLLECTION, job_id, {"resource": data, "internal": {}})
        self._run(pipelines.COLLECTION, job_id)
        return data

    def _create_schedule(self, parent: str, data: dict[str, Any]) -> dict[str, Any]:
        schedules.validate(data)
        job_id = self.store.new_id(schedules.COLLECTION)
        stamp = now()
        data.update(
            name=f"{parent}/schedules/{job_id}",
            state="ACTIVE",
            createTime=stamp,
            updateTime=stamp,
            startedRunCount="0",
        )
        if not data.get("maxConcurrentRunCount"):
            data["maxConcurrentRunCount"] = "1"
        for output_only in ("lastPauseTime", "lastResumeTime", "lastScheduledRunResponse"):
            data.pop(output_only, None)
        self.store.put(schedules.COLLECTION, job_id, {"resource": data, "internal": {}})
        return data

    def pause_schedule(self, collection: str, job_id: str, **_: Any) -> dict[str, Any]:
        return self._pause_resume(collection, job_id, pause=True)

    def resume_schedule(self, collection: str, job_id: str, **_: Any) -> dict[str, Any]:
        return self._pause_resume(collection, job_id, pause=False)

    def _pause_resume(self, collection: str, job_id: str, pause: bool) -> dict[str, Any]:
        verb = "paused" if pause else "resumed"
        if collection != schedules.COLLECTION:
            raise ApiError(400, f"only schedules can be {verb}", "FAILED_PRECONDITION")
        rec = self._record(collection, job_id)
        wanted_from = "ACTIVE" if pause else "PAUSED"
        if rec["resource"].get("state") != wanted_from:
            raise ApiError(
                400,
                f"schedule {job_id} is {rec['resource'].get('state')}; only a {wanted_from} "
                f"schedule can be {verb}",
                "FAILED_PRECONDITION",
            )

        def fn(r: dict[str, Any]) -> None:
            res = r["resource"]
            stamp = now()
            res["state"] = "PAUSED" if pause else "ACTIVE"
            res["updateTime"] = stamp
            res["lastPauseTime" if pause else "lastResumeTime"] = stamp
            if not pause and not res.get("catchUp"):
                r["internal"]["lastFire"] = stamp  # runs missed while paused are not replayed

        self.store.update(collection, job_id, fn)
        return {}

    def _validate(self, collection: str, msg: Any) -> None:
        if not msg.display_name:
            raise ApiError(400, "display_name is required")
        job_spec = msg.job_spec if collection == "customJobs" else msg.trial_job_spec
        field = "job_spec" if collection == "customJobs" else "trial_job_spec"
        if not job_spec.worker_pool_specs:
            raise ApiError(400, f"{field}.worker_pool_specs must hold at least one worker pool")
        pool = job_spec.worker_pool_specs[0]
        if not pool.container_spec.image_uri:
            raise ApiError(
                400,
                f"{field}.worker_pool_specs[0].container_spec.image_uri is "
                "required (python_package_spec is not supported by the emulator)",
            )
        uri = pool.container_spec.image_uri
        if self.resolve_image(uri) is None:
            raise ApiError(
                400,
                f"image {uri!r} is not runnable locally: build it with the local "
                "image builder or map it with --image NAME=DIR",
                "FAILED_PRECONDITION",
            )
        if collection == "hyperparameterTuningJobs":
            if msg.max_trial_count <= 0:
                raise ApiError(400, f"max_trial_count must be > 0, got {msg.max_trial_count}")
            if msg.parallel_trial_count <= 0:
                raise ApiError(
                    400, f"parallel_trial_count must be > 0, got {msg.parallel_trial_count}"
                )
            if msg.max_failed_trial_count < 0:
                raise ApiError(400, "max_failed_trial_count must be >= 0")
            if len(msg.study_spec.metrics) != 1:
                raise ApiError(
                    400,
                    "study_spec.metrics must hold exactly one metric, got "
                    f"{len(msg.study_spec.metrics)}",
                )
            if not msg.study_spec.parameters:
                raise ApiError(400, "study_spec.parameters must not be empty")
            from hydra_vertex.errors import HydraVertexError
            from hydra_vertex.search_space import SearchSpace

            try:
                SearchSpace.from_study_spec(msg.study_spec, source="study_spec")
            except HydraVertexError as e:
                raise ApiError(400, str(e)) from None

    def get(self, collection: str, job_id: str, **_: Any) -> dict[str, Any]:
        return self._record(collection, job_id)["resource"]

    def _record(self, collection: str, job_id: str) -> dict[str, Any]:
        rec = self.store.get(collection, job_id)
        if rec is None:
            raise ApiError(404, f"{routes.MESSAGE_TYPES[collection]} {job_id} not found")
        return rec

    def list(
        self, project: str, location: str, collection: str, query: dict[str, str], **_: Any
    ) -> dict[str, Any]:
        prefix = f"projects/{project}/locations/{location}/"
        items = [
            r["resource"]
            for _id, r in self.store.items(collection)
            if r["resource"]["name"].startswith(prefix)
        ]
        items = [r for r in items if matches_filter(r, query.get("filter", ""))]
        items.sort(key=lambda r: (r.get("createTime", ""), r["name"]), reverse=True)
        try:
            size = int(query.get("pageSize") or DEFAULT_PAGE_SIZE)
            start = int(query.get("pageToken") or 0)
        except ValueError:
            raise ApiError(400, "pageSize and pageToken must be integers") from None
        size = max(1, min(size, 1000))
        page = items[start : start + size]
        out: dict[str, Any] = {collection: page}
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return out

    def cancel(self, collection: str, job_id: str, **_: Any) -> dict[str, Any]:
        if collection == schedules.COLLECTION:
            raise ApiError(
                400, "a schedule is paused or deleted, not cancelled", "FAILED_PRECONDITION"
            )
        terminal = _terminal(collection)
        cancelling = (
            "PIPELINE_STATE_CANCELLING"
            if collection == pipelines.COLLECTION
            else "JOB_STATE_CANCELLING"
        )

        def fn(rec: dict[str, Any]) -> None:
            state = rec["resource"].get("state")
            if state in terminal:
                raise ApiError(
                    400,
                    f"job {job_id} is already {state}; it cannot be cancelled",
                    "FAILED_PRECONDITION",
                )
            if state != cancelling:
                rec["resource"]["state"] = cancelling
                rec["resource"]["updateTime"] = now()

        self._record(collection, job_id)
        self.store.update(collection, job_id, fn)
        return {}

    def delete(
        self, project: str, location: str, collection: str, job_id: str, **_: Any
    ) -> dict[str, Any]:
        rec = self._record(collection, job_id)
        state = rec["resource"].get("state")
        if collection != schedules.COLLECTION and state not in _terminal(collection):
            raise ApiError(
                400, f"job {job_id} is {state}; cancel it before deleting it", "FAILED_PRECONDITION"
            )
        self.store.delete(collection, job_id)
        name = rec["resource"]["name"]
        return {
            "name": f"{name}/operations/{secrets.randbelow(10**18)}",
            "done": True,
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata",
                "genericMetadata": {"createTime": now(), "updateTime": now()},
            },
        }

    # -- serving ---------------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        emulator = self

        class Handler(_Handler):
            pass

        Handler.emulator = emulator
        httpd = _Server((host, port), Handler)
        httpd.daemon_threads = True
        self.httpd = httpd
        bound = httpd.server_address[1]
        self.allowed_hosts = {f"{h}:{bound}" for h in ("127.0.0.1", "localhost", host)}
        self.any_interface = host in ("0.0.0.0", "::", "")
        self.port = bound
        self.endpoint = f"http://{host if host not in ('0.0.0.0', '') else '127.0.0.1'}:{bound}"
        return httpd

    def _host_allowed(self, host: str) -> bool:
        """The emulator's own address. Bound to all interfaces (0.0.0.0), any IP literal with
        our port is accepted too: IP literals cannot be DNS-rebound, host names still can."""
        if host in self.allowed_hosts:
            return True
        if not self.any_interface:
            return False
        name, _, port = host.rpartition(":")
        if port != str(self.port):
            return False
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return True

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        split = urlsplit(raw_path)
        host = headers.get("Host", "")
        if not self._host_allowed(host):
            raise ApiError(403, "the Host header is not this emulator's own address")
        origin = headers.get("Origin")
        if origin is not None and not (
            origin.startswith("http://") and self._host_allowed(origin[len("http://") :])
        ):
            raise ApiError(403, "cross-origin requests are refused")
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        page = method in ("GET", "HEAD") and console.is_console_path(split.path)
        if self.token:
            auth = headers.get("Authorization", "")
            if page and not auth:  # a browser cannot send the header: the console takes ?token=
                auth = f"Bearer {query.get('token', '')}"
            if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
                raise ApiError(401, "missing or invalid bearer token (see endpoint.json)")
        if page:
            status, content_type, html = console.render(self.store, split.path, query)
            return status, Raw(html, content_type, {
                "Content-Security-Policy": console.CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
            })
        for service in self.services:
            answer = service.route(method, split.path)
            if answer is not None:
                return answer(Request(method, split.path, query, headers, body))
        route, params = routes.match(method, split.path)
        ints = "enum-encoding=int" in query.get("$alt", "")
        handler = getattr(self, route.handler)
        result = handler(body=body, query=query, **params)
        collection = params["collection"]
        if route.handler in ("create", "get"):
            result = routes.to_proto_json(collection, result, ints)
        elif route.handler == "list":
            result[collection] = [
                routes.to_proto_json(collection, r, ints) for r in result[collection]
            ]
        return 200, result


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _dispatch(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ApiError(400, "invalid Content-Length")
            limit = body_limit(self.path)
            if length > limit:
                self.close_connection = True
                raise ApiError(
                    413,
                    f"request body of {length} bytes exceeds the limit of {limit} bytes",
                )
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise ApiError(400, "chunked request bodies are not supported")
            body = self.rfile.read(length) if length else b""
            status, payload = self.emulator.handle(method, self.path, self.headers, body)
        except ApiError as e:
            status, payload = e.code, e.envelope()
        except Exception:
            log.exception("internal error on %s", method)
            status, payload = 500, ApiError(500, "internal emulator error").envelope()
        if isinstance(payload, Raw):
            data, content_type, extra = payload.body, payload.content_type, payload.headers
        else:
            data, content_type, extra = json.dumps(payload).encode(), _JSON, {}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.command, urlsplit(self.path).path)


def _terminal(collection: str) -> tuple[str, ...]:
    return pipelines.TERMINAL if collection == pipelines.COLLECTION else TERMINAL_JOB_STATES


class _Server(ThreadingHTTPServer):
    # The standard library listens with a backlog of 5: a burst of clients (parallel trials,
    # pipeline tasks, a progress poller) would see refused connections under load.
    request_queue_size = 128


_FILTER_TERM = re.compile(
    r"^\s*(labels\.[A-Za-z0-9_-]+|display_name|displayName|schedule_name|scheduleName)\s*=\s*"
    r'"([^"]*)"\s*$'
)
_FILTER_FIELDS = {"display_name": "displayName", "schedule_name": "scheduleName"}


def matches_filter(resource: dict[str, Any], text: str) -> bool:
    """The subset of AIP-160 list filters the clients here send: ``labels.KEY="V"`` and
    ``display_name="V"`` joined by ``AND``. Other terms are not understood and are ignored (the
    caller checks what it gets; see docs/emulator.md)."""
    if not text.strip():
        return True
    for term in re.split(r"\s+AND\s+", text.strip()):
        m = _FILTER_TERM.match(term)
        if m is None:
            continue
        field, value = m.group(1), m.group(2)
        if field.startswith("labels."):
            if (resource.get("labels") or {}).get(field[len("labels.") :]) != value:
                return False
        elif resource.get(_FILTER_FIELDS.get(field, field)) != value:
            return False
    return True
