"""The HTTP server: one response adapter over the routes table, security checks before any work.

Stdlib ``ThreadingHTTPServer`` keeps the in-process start/stop simple and dependency-free;
``connections`` bounds it (connection cap, header deadline, body rate, header size). A request is
judged on its headers first: Host, Origin, route and token, then ``Content-Length``; only a
request that passes has its body read. A refused request's body is never read: the connection is
closed after the answer.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hydra_vertex import images
from hydra_vertex.emulator import console, devices, local_api, pipelines, records, schedules
from hydra_vertex.emulator.cloudbuild import CloudBuildService
from hydra_vertex.emulator.connections import CappedServer, DeadlineReader, HeadersTooLarge
from hydra_vertex.emulator.executor import Launcher
from hydra_vertex.emulator.gcs import GcsService
from hydra_vertex.emulator.limits import DEFAULT as DEFAULT_LIMITS
from hydra_vertex.emulator.limits import Limits
from hydra_vertex.emulator.logging_api import LoggingApi
from hydra_vertex.emulator.registry import RegistryService
from hydra_vertex.emulator.router import ApiError, Match, Raw, Request, Route, Router
from hydra_vertex.emulator.runners import (
    TERMINAL_JOB_STATES,
    CustomJobRunner,
    JobRunner,
    StoredJobRunner,
)
from hydra_vertex.emulator.store import Store
from hydra_vertex.emulator.tls import TlsFiles
from hydra_vertex.emulator.trial_loop import TuningJobRunner
from hydra_vertex.emulator.vertex_api import VertexApi
from hydra_vertex.errors import EmulatorError, StateWriteError

log = logging.getLogger("hydra_vertex.emulator")
MAX_BODY_BYTES = DEFAULT_LIMITS.max_body_bytes
MAX_UPLOAD_BYTES = DEFAULT_LIMITS.max_upload_bytes
_DIGITS = re.compile(r"[0-9]{1,18}")  # a Content-Length that fits: 18 digits is already 1 EB


_JSON = "application/json; charset=UTF-8"
_RUNNERS: dict[str, type[JobRunner]] = {
    "customJobs": CustomJobRunner,
    "hyperparameterTuningJobs": TuningJobRunner,
}


def _warm_up() -> None:
    """What the first jobs will need, in the order they need it: the pipeline processes' warm
    server and kfp (a pipeline job's create), then Optuna (its first trial). One thread: imports
    running side by side would only contend for the interpreter lock."""
    import contextlib

    with contextlib.suppress(ImportError):  # an emulator without the local extra runs neither
        pipelines.warm_up()
    with contextlib.suppress(ImportError):
        import optuna  # noqa: F401


class Emulator:
    """State, runners and the services; ``serve`` binds it to a socket. Every service's routes
    go into one :class:`~hydra_vertex.emulator.router.Router`."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        image_map: dict[str, str] | None = None,
        token: str | None = None,
        seed: int | None = None,
        gpus: str | Sequence[str] | None = None,
        limits: Limits | None = None,
        console_actions: bool = False,
        console_token: str | None = None,
    ) -> None:
        inventory = devices.detect(gpus)  # before the store: a bad list leaves nothing locked
        self.devices = devices.DevicePool(inventory.devices, inventory.source)
        self.store = Store(state_dir, check=records.problem)
        self.limits = limits or DEFAULT_LIMITS
        self.image_map = {k: Path(v).resolve() for k, v in (image_map or {}).items()}
        self.token = token if token is not None else secrets.token_urlsafe(32)
        # The console's own token (printed in its link): the read-only pages, nothing else.
        self.console_token = (
            (console_token if console_token is not None else secrets.token_urlsafe(32))
            if self.token
            else ""
        )
        if self.token and hmac.compare_digest(self.console_token, self.token):
            raise EmulatorError("the console token must differ from the API token")
        self.seed = seed
        self.launcher = Launcher(
            self.store, self.resolve_image, secrets=(self.token, self.console_token)
        )
        self.runners: dict[str, StoredJobRunner] = {}
        self.scheduler: schedules.Scheduler | None = None
        self._lock = threading.Lock()
        self.httpd: CappedServer | None = None
        self.grpc_server: Any = None
        self.grpc_endpoint = ""
        self.tls: TlsFiles | None = None
        self.endpoint = ""
        self.port = 0
        self.allowed_hosts: set[str] = set()
        self.any_interface = False
        self.vertex = VertexApi(
            self.store,
            self._run,
            self.resolve_image,
            seed,
            self.devices,
            on_cancel=self.notify_cancel,
        )
        self.router = Router(
            [
                *self.vertex.routes(),
                *GcsService(self.store).routes(),
                *CloudBuildService(self.store).routes(),
                *RegistryService(self.store).routes(),  # the KFP template registry
                *LoggingApi(self.store).routes(),  # Cloud Logging's entries:list
                *console.routes(self.store, actions=console_actions, api=self._call),
                # the emulator's own details, and its console link for API clients
                *local_api.routes(self.store, self.devices, lambda: self.console_url),
            ]
        )

    def _call(self, method: str, path: str) -> Any:
        """The emulator's own API, called in process (the console's actions go through it)."""
        return self.router.resolve(method, path)(Request(method, path, {}, {}, b""))

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
    def start_runners(self) -> None:
        """Start runners for every unfinished job (after a restart), and the scheduler; warm
        the server that pipeline processes fork from, and the suggester's imports (the first
        trial of the first tuning job need not wait for Optuna). The devices of processes that
        outlived the last emulator are reserved again first, before any job can ask for them."""
        threading.Thread(target=_warm_up, name="emulator-warm-up", daemon=True).start()
        unfinished = [
            (collection, job_id, rec)
            for collection in _RUNNERS
            for job_id, rec in self.store.items(collection)
            if rec["resource"].get("state") not in TERMINAL_JOB_STATES
        ]
        for collection, job_id, rec in unfinished:
            for owner, held in _RUNNERS[collection].devices_in_use(job_id, rec).items():
                self.devices.adopt(owner, held)
        for collection, job_id, _rec in unfinished:
            self._run(collection, job_id)
        for job_id, rec in self.store.items(pipelines.COLLECTION):
            if rec["resource"].get("state") not in pipelines.TERMINAL:
                self._run(pipelines.COLLECTION, job_id)
        self.scheduler = schedules.Scheduler(self.store, self.vertex.create_pipeline_run)
        self.scheduler.start()

    def _run(self, collection: str, job_id: str) -> None:
        with self._lock:
            runner: StoredJobRunner
            if collection == pipelines.COLLECTION:
                runner = pipelines.PipelineRunner(self.store, job_id, self.endpoint, self.token)
            else:
                runner = _RUNNERS[collection](
                    self.store, self.launcher, job_id, devices=self.devices
                )
            self.runners[f"{collection}/{job_id}"] = runner
            runner.start()

    def notify_cancel(self, collection: str, job_id: str) -> None:
        """A job was set CANCELLING: wake its runner now. A job whose runner is gone (it failed
        and could not store the job's end) gets a new one, which carries the cancel out."""
        with self._lock:
            runner = self.runners.get(f"{collection}/{job_id}")
        if runner is not None and runner.is_alive():
            runner.cancel_event.set()
            runner.wake.set()
        elif collection in _RUNNERS or collection == pipelines.COLLECTION:
            self._run(collection, job_id)

    def shutdown(self) -> None:
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=1).wait(10)
        if self.scheduler is not None:
            self.scheduler.stop_event.set()
            self.scheduler.join(timeout=10)
        for runner in list(self.runners.values()):
            runner.stop_event.set()
        for runner in list(self.runners.values()):
            runner.join(timeout=30)
        self.store.close()

    # -- serving ---------------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> CappedServer:
        emulator = self

        class Handler(_Handler):
            pass

        Handler.emulator = emulator
        httpd = CappedServer((host, port), Handler, self.limits)
        self.httpd = httpd
        bound = httpd.server_address[1]
        self.allowed_hosts = {f"{h}:{bound}" for h in ("127.0.0.1", "localhost", host)}
        self.any_interface = host in ("0.0.0.0", "::", "")
        self.port = bound
        self.endpoint = f"http://{host if host not in ('0.0.0.0', '') else '127.0.0.1'}:{bound}"
        return httpd

    @property
    def console_url(self) -> str:
        """The console's link, with the console token (never the API token)."""
        return f"{self.endpoint}/?token={self.console_token}" if self.console_token else (
            f"{self.endpoint}/"
        )

    def serve_grpc(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the Vertex AI routes over gRPC with TLS as well (``grpc_server``), with a
        certificate made for this state directory (``tls``); the ``host:port`` to dial."""
        from hydra_vertex.emulator import grpc_server, tls

        try:
            files = tls.ensure(self.store.root, host)
        except OSError as e:
            raise EmulatorError(
                f"cannot write the TLS files under {str(self.store.root / 'tls')!r}: "
                f"{e.strerror or e} (is the state directory writable, and its disk not full?)"
            ) from None
        api = grpc_server.VertexGrpc(self.router, self.token)
        self.grpc_server, bound = grpc_server.serve(api, host, port, files, self.limits)
        self.tls = files
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.grpc_endpoint = f"[{shown}]:{bound}" if ":" in shown else f"{shown}:{bound}"
        return self.grpc_endpoint

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

    def authorize(
        self, method: str, raw_path: str, headers: Any
    ) -> tuple[Match, dict[str, str], str]:
        """Judge a request on its headers alone: Host, Origin, then the route and the bearer
        token (an unknown route without the token is 401, not 404). The route's match, the
        query and who the caller is (:attr:`Request.auth`); an :class:`ApiError` otherwise.
        Nothing of the body has been read yet.

        Two tokens: the API token (``endpoint.json``) opens everything; the console token (the
        printed console link) opens the console's routes only (``browser``), as ``console``:
        every API route refuses it, and the console's actions ask :func:`console.may_act`."""
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
        match: Match | None = None
        try:
            match = self.router.resolve(method, split.path)
        except ApiError as e:
            unrouted = e  # answered once the caller has shown the token
        who = "api"
        if self.token:
            browser = match is not None and match.route.browser
            auth = headers.get("Authorization", "")
            if browser and not auth:
                auth = f"Bearer {query.get('token', '')}"  # a browser cannot send the header
            if _shows(auth, self.token):
                who = "api"
            elif browser and _shows(auth, self.console_token):
                who = "console"
            elif browser and method in ("GET", "HEAD"):  # a page for a person, not JSON
                page = console.login(split.path, query)
                return Match(Route(method, split.path, lambda _request: page), {}), query, who
            else:
                raise ApiError(401, "missing or invalid bearer token (see endpoint.json)")
        if match is None:
            raise unrouted
        return match, query, who


def _shows(auth: str, token: str) -> bool:
    """``auth`` (an Authorization header's value) is ``Bearer <token>``."""
    return bool(token) and hmac.compare_digest(auth.encode(), f"Bearer {token}".encode())


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    protocol_version = "HTTP/1.1"
    reader: DeadlineReader

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.close()  # the buffered file over the plain socket: reads go through limits
        self.reader = DeadlineReader(self.connection, self.emulator.limits)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        """One request; the request line and headers under the header deadline and size limit
        (a timeout there closes the connection without an answer, as for an idle one)."""
        self.reader.expect_headers()
        try:
            super().handle_one_request()
        except HeadersTooLarge as e:
            self.close_connection = True
            self.request_version = "HTTP/1.1"  # the request line may not have been read
            self.command = getattr(self, "command", None) or ""
            self._answer(431, ApiError(431, str(e), "INVALID_ARGUMENT").envelope())

    def handle_expect_100(self) -> bool:
        """No "100 Continue" before the checks: ``_dispatch`` sends it once they pass."""
        return True

    def _body_length(self, limit: int) -> int:
        """The declared body size, checked before anything is read: 400 unless it is one
        plain byte count, 413 over ``limit``; chunked bodies are refused."""
        if self.headers.get("Transfer-Encoding"):
            raise ApiError(400, "chunked request bodies are not supported; send Content-Length")
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        text = values.pop() if len(values) == 1 else ""
        if not (text.isascii() and text.isdigit()):
            shown = ", ".join(sorted(self.headers.get_all("Content-Length") or []))[:40]
            raise ApiError(400, f"invalid Content-Length {shown!r}: it must be one byte count")
        if not _DIGITS.fullmatch(text) or int(text) > limit:
            raise ApiError(
                413, f"request body of {text[:20]} bytes exceeds the limit of {limit} bytes"
            )
        return int(text)

    def _declares_body(self) -> bool:
        return bool(self.headers.get("Transfer-Encoding")) or (
            self.headers.get("Content-Length", "0").strip() not in ("", "0")
        )

    def _dispatch(self, method: str) -> None:
        emulator = self.emulator
        unread = self._declares_body()  # a refused request's body is never read
        try:
            match, query, who = emulator.authorize(method, self.path, self.headers)
            path = urlsplit(self.path).path
            length = self._body_length(emulator.limits.body_limit(path))
            self.reader.expect_body()
            if length and self.headers.get("Expect", "").lower() == "100-continue":
                self.send_response_only(100)
                self.end_headers()
            try:
                body = self.rfile.read(length) if length else b""
            except TimeoutError:
                raise
            except OSError:  # the client reset the connection mid-body
                body = b""
            if len(body) < length:  # the client went away mid-body: nobody to answer
                self.close_connection = True
                return
            unread = False
            status, payload = match(Request(method, path, query, self.headers, body, who))
        except ApiError as e:
            status, payload = e.code, e.envelope()
        except TimeoutError as e:  # the body came too slowly
            status, payload = 408, ApiError(408, str(e), "DEADLINE_EXCEEDED").envelope()
        except StateWriteError as e:  # the disk is full or read-only: one line, no traceback
            log.error("%s %s: %s", method, urlsplit(self.path).path, e)
            status, payload = 500, ApiError(500, str(e)).envelope()
        except Exception:
            log.exception("internal error on %s", method)
            status, payload = 500, ApiError(500, "internal emulator error").envelope()
        if unread:
            self.close_connection = True
        self._answer(status, payload)

    def _answer(self, status: int, payload: Any) -> None:
        if isinstance(payload, Raw):
            data, content_type, extra = payload.body, payload.content_type, payload.headers
        else:
            data, content_type, extra = json.dumps(payload).encode(), _JSON, {}
        self.connection.settimeout(self.emulator.limits.transfer_seconds(len(data)))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
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
        log.debug("%s %s", getattr(self, "command", ""), urlsplit(getattr(self, "path", "")).path)
