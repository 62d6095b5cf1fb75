"""gRPC: the Vertex AI handlers over gRPC with TLS, as the SDK's default transport talks.

One generic handler answers ``/google.cloud.aiplatform.v1.<Service>/<Method>`` and
``/google.longrunning.Operations/<Method>`` with the callables of the one
:class:`~hydra_vertex.emulator.router.Router`, so REST and gRPC cannot drift apart:

1. the request bytes are parsed into the method's request type;
2. the ``aiplatform_v1`` client library's own REST transcoding (the ``_Base<Method>`` helpers of
   the service's REST transport, built from the method's ``google.api.http`` rules) turns it into
   the HTTP request the REST client would have sent: method, path, query and proto-JSON body;
3. the router resolves that request to its handler, which answers as it answers REST;
4. the answer's proto-JSON is parsed into the method's response type (the return type of the REST
   transport's call), as the REST client parses it.

An :class:`~hydra_vertex.emulator.router.ApiError` becomes the gRPC status of the same name
(``FAILED_PRECONDITION``, ``NOT_FOUND``, ...); a method that no route serves is
``UNIMPLEMENTED``. The bearer token comes from the ``authorization`` metadata (the SDK's
credentials put it there), checked before anything else: a call without it is answered
``UNAUTHENTICATED`` by a handler that never reads its message. TLS only: the certificate comes
from :mod:`~hydra_vertex.emulator.tls`.

Limits (:class:`~hydra_vertex.emulator.limits.Limits`, as the HTTP server's): request messages up
to ``grpc_max_message_bytes``, ``grpc_max_concurrent_rpcs`` calls at once (more are
``RESOURCE_EXHAUSTED`` at once, not queued), at most 100 streams per connection, a TLS handshake
within ``grpc_handshake_timeout``, idle connections closed after ``grpc_idle_timeout``.
"""

from __future__ import annotations

import functools
import hmac
import importlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from hydra_vertex.emulator.limits import DEFAULT as DEFAULT_LIMITS
from hydra_vertex.emulator.limits import Limits
from hydra_vertex.emulator.router import ApiError, Raw, Request, Router
from hydra_vertex.emulator.tls import TlsFiles
from hydra_vertex.errors import StateWriteError

log = logging.getLogger("hydra_vertex.emulator")
_VERTEX = "google.cloud.aiplatform.v1"
_OPERATIONS = "google.longrunning.Operations"
_LIBRARY = "google.cloud.aiplatform_v1"
_METHOD = re.compile(r"^/([A-Za-z_][\w.]*)\.([A-Za-z_]\w*)/([A-Za-z_]\w*)$")
_HTTP_STATUS = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
_NO_TOKEN = "missing or invalid bearer token (see endpoint.json)"
MAX_MESSAGE_BYTES = DEFAULT_LIMITS.grpc_max_message_bytes  # as the HTTP server's body limit


@dataclass(frozen=True)
class RpcMethod:
    """One gRPC method and the client library's REST helpers for it."""

    name: str
    base: Any  # the REST transport's _Base<Method>: http options, transcoding, body, query
    request_type: Any
    response_type: Any

    def parse(self, data: bytes) -> Any:
        if hasattr(self.request_type, "deserialize"):  # a proto-plus type
            return self.request_type.deserialize(data)
        return self.request_type.FromString(data)

    def http_request(self, message: Any) -> Request:
        """The HTTP request the REST client sends for ``message``."""
        from google.api_core import rest_helpers

        transcoded = self.base._get_transcoded_request(self.base._get_http_options(), message)
        body = ""
        if "body" in transcoded and hasattr(self.base, "_get_request_body_json"):
            body = self.base._get_request_body_json(transcoded)
        query: dict[str, str] = {}
        if hasattr(self.base, "_get_query_params_json"):
            params = self.base._get_query_params_json(transcoded)
            query = dict(rest_helpers.flatten_query_params(params, strict=True))
        return Request(
            method=str(transcoded["method"]).upper(),
            path=str(transcoded["uri"]),
            query=query,
            headers={"Content-Type": "application/json"},
            body=body.encode("utf-8"),
        )

    def answer(self, payload: Any) -> bytes:
        """``payload`` (the handler's proto-JSON) as the serialized response message."""
        from google.protobuf import json_format

        text = json.dumps(payload)
        if hasattr(self.response_type, "deserialize"):
            msg = self.response_type.from_json(text, ignore_unknown_fields=True)
            return bytes(self.response_type.serialize(msg))
        out = json_format.Parse(text, self.response_type(), ignore_unknown_fields=True)
        return bytes(out.SerializeToString())


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@functools.lru_cache(maxsize=512)
def rpc_method(name: str) -> RpcMethod | None:
    """The method ``/package.Service/Method`` if the aiplatform_v1 client library knows it (its
    REST transport has the method's helpers), else None."""
    m = _METHOD.match(name)
    if m is None:
        return None
    package, service, method = m.groups()
    if f"{package}.{service}" == _OPERATIONS:
        service = "JobService"  # every Vertex service carries the same operations mixin
    elif package != _VERTEX:
        return None
    try:
        transports = f"{_LIBRARY}.services.{_snake(service)}.transports"
        rest = importlib.import_module(f"{transports}.rest")
        rest_base = importlib.import_module(f"{transports}.rest_base")
    except ImportError:
        return None
    call = getattr(getattr(rest, f"{service}RestTransport", None), f"_{method}", None)
    base = getattr(getattr(rest_base, f"_Base{service}RestTransport", None), f"_Base{method}", None)
    hints = getattr(call.__call__, "__annotations__", {}) if call is not None else {}
    if base is None or "request" not in hints:
        return None
    from google.protobuf import empty_pb2

    return RpcMethod(name, base, hints["request"], hints.get("return") or empty_pb2.Empty)


class VertexGrpc:
    """Answers gRPC calls through ``router``; ``token`` is the API token."""

    def __init__(self, router: Router, token: str) -> None:
        self.router = router
        self.token = token

    def authorized(self, metadata: Sequence[tuple[str, Any]]) -> bool:
        """The call carries the API token (``authorization: Bearer ...``)."""
        if not self.token:
            return True
        auth = next((str(v) for k, v in metadata if k.lower() == "authorization"), "")
        return hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode())

    def call(self, name: str, data: bytes, metadata: Sequence[tuple[str, Any]]) -> bytes:
        if not self.authorized(metadata):
            raise ApiError(401, _NO_TOKEN)
        rpc = name.lstrip("/").replace("/", ".")  # google.cloud.aiplatform.v1.JobService.X
        method = rpc_method(name)
        if method is None:
            raise ApiError(501, f"the emulator does not serve {rpc}", "UNIMPLEMENTED")
        try:
            message = method.parse(data)
        except Exception as e:
            raise ApiError(400, f"cannot parse the request of {rpc}: {e}") from None
        try:
            request = method.http_request(message)
        except ValueError as e:  # no HTTP rule fits the request (a malformed name)
            raise ApiError(400, f"{rpc}: {e}") from None
        try:
            match = self.router.resolve(request.method, request.path)
        except ApiError as e:
            if e.code in (404, 405):
                why = f"the emulator does not serve {rpc} (see docs/emulator.md)"
                raise ApiError(501, why, "UNIMPLEMENTED") from None
            raise
        _status, payload = match(request)
        if isinstance(payload, Raw):  # pragma: no cover - Vertex routes answer JSON
            raise ApiError(500, f"{rpc} answered a non-JSON body")
        return method.answer(payload)


class _Handler:
    """A ``grpc.GenericRpcHandler``: every method, raw bytes in and out."""

    def __init__(self, api: VertexGrpc) -> None:
        self.api = api

    def service(self, details: Any) -> Any:
        import grpc

        if not self.api.authorized(details.invocation_metadata or ()):
            # Refused on its metadata: a streaming handler that aborts without reading the message.
            return grpc.stream_unary_rpc_method_handler(_refuse)
        name = str(details.method)
        behaviour: Callable[[bytes, Any], bytes] = functools.partial(self._unary, name)
        return grpc.unary_unary_rpc_method_handler(behaviour)

    def _unary(self, name: str, data: bytes, context: Any) -> bytes:
        import grpc

        try:
            return self.api.call(name, data, context.invocation_metadata())
        except ApiError as e:
            status = e.status if e.status in grpc.StatusCode.__members__ else None
            code = grpc.StatusCode[status or _HTTP_STATUS.get(e.code, "UNKNOWN")]
            context.abort(code, e.message)
        except StateWriteError as e:  # the disk is full or read-only: one line, no traceback
            log.error("%s: %s", name, e)
            context.abort(grpc.StatusCode.INTERNAL, str(e))
        except Exception:
            log.exception("internal error on %s", name)
            context.abort(grpc.StatusCode.INTERNAL, "internal emulator error")
        raise AssertionError("unreachable")  # pragma: no cover - abort raises


def _refuse(requests: Any, context: Any) -> bytes:
    import grpc

    context.abort(grpc.StatusCode.UNAUTHENTICATED, _NO_TOKEN)
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


def serve(
    api: VertexGrpc, host: str, port: int, tls: TlsFiles, limits: Limits = DEFAULT_LIMITS
) -> tuple[Any, int]:
    """Start a TLS gRPC server for ``api`` on ``host:port``; (the server, its bound port)."""
    import grpc

    class Handler(_Handler, grpc.GenericRpcHandler):
        pass

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="emulator-grpc"),
        handlers=(Handler(api),),
        maximum_concurrent_rpcs=limits.grpc_max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", limits.grpc_max_message_bytes),
            ("grpc.max_concurrent_streams", 100),
            ("grpc.server_handshake_timeout_ms", int(limits.grpc_handshake_timeout * 1000)),
            ("grpc.max_connection_idle_ms", int(limits.grpc_idle_timeout * 1000)),
        ],
    )
    credentials = grpc.ssl_server_credentials([(tls.key.read_bytes(), tls.cert.read_bytes())])
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_secure_port(address, credentials)
    except RuntimeError as e:  # grpcio: "Failed to bind to address ..."
        raise OSError(f"{e}".split(";")[0]) from None
    if bound == 0:
        raise OSError(f"cannot bind {address} for gRPC")
    server.start()
    return server, bound
