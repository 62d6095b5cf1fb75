"""A local emulator of the Vertex AI API subset hydra-vertex uses (jobs, pipeline jobs,
schedules), with the Cloud Storage, Cloud Build and template-registry subsets beside it.

The public face of the package, and all a client needs: ``start(state_dir)`` runs one in this
process (tests, ``hydra-vertex run --local``) and returns an :class:`EmulatorHandle` (endpoint,
token, state and storage directories, ``stop()``); ``connect(state_dir)`` points the aiplatform
SDK at a running one through its ``endpoint.json``. Everything else goes over HTTP; clients never
reach into the server's objects, and the server never imports client modules.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra_vertex.errors import EmulatorError

__all__ = ["EmulatorHandle", "connect", "start", "trust_emulator_ca", "write_endpoint_file"]


@dataclass
class EmulatorHandle:
    """A running emulator: where it listens (REST; gRPC with TLS unless turned off), its API
    token (every call; never printed), its console token (the read-only console pages only:
    ``console_url`` carries it), its state directory."""

    endpoint: str
    token: str
    state_dir: Path
    _emulator: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    grpc_endpoint: str = ""  # host:port, TLS with the CA in ``tls_ca``; "" when not served
    tls_ca: Path | None = None
    console_token: str = ""

    @property
    def console_url(self) -> str:
        """The console's link with the console token: what may be printed and shared."""
        return str(self._emulator.console_url)

    @property
    def storage_root(self) -> Path:
        """Where its Cloud Storage keeps objects: ``gs://b/x`` is ``storage_root / "b/x"``."""
        from hydra_vertex.local_conventions import storage_root

        return storage_root(self.state_dir)

    def stop(self) -> None:
        httpd = self._emulator.httpd
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        self._thread.join(timeout=10)
        self._emulator.shutdown()

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    state_dir: str | os.PathLike[str],
    port: int = 0,
    host: str = "127.0.0.1",
    images: dict[str, str] | None = None,
    token: str | None = None,
    seed: int | None = None,
    gpus: str | Sequence[str] | None = None,
    grpc_port: int | None = 0,
    limits: Any = None,
    console_actions: bool = False,
) -> EmulatorHandle:
    """Start an emulator in a background thread; writes ``state_dir/endpoint.json``.

    REST on ``host:port``; gRPC with TLS on ``host:grpc_port`` as well (0: a free port; None:
    no gRPC). ``gpus``: the machine's GPUs that trials share (``"0,1,2,3"`` or a list; ``""``:
    none); default ``HYDRA_VERTEX_GPUS``, then ``CUDA_VISIBLE_DEVICES``, then ``nvidia-smi -L``.
    ``limits``: a :class:`~hydra_vertex.emulator.limits.Limits` (connections, timeouts, sizes;
    the defaults when None). ``console_actions``: the console's cancel button works for every
    console visitor, not only for those with the API token."""
    from hydra_vertex.emulator.server import Emulator

    emulator = Emulator(
        state_dir,
        image_map=images,
        token=token,
        seed=seed,
        gpus=gpus,
        limits=limits,
        console_actions=console_actions,
    )
    try:
        httpd = emulator.serve(host, port)
        if grpc_port is not None:
            port = grpc_port
            emulator.serve_grpc(host, grpc_port)
    except OSError as e:
        _close(emulator)
        raise EmulatorError(
            f"cannot listen on {host}:{port}: {e.strerror or e} (choose another --port or "
            f"--grpc-port, or 0 for a free one)"
        ) from None
    except BaseException:
        _close(emulator)
        raise
    tls = emulator.tls
    grpc_info = {}
    if tls is not None:
        grpc_info = {
            "grpc_endpoint": emulator.grpc_endpoint,
            "grpc_ca": str(tls.ca),
            "grpc_roots": str(tls.roots),
        }
    try:
        write_endpoint_file(
            Path(state_dir),
            emulator.endpoint,
            emulator.token,
            console_token=emulator.console_token,
            **grpc_info,
        )
    except OSError as e:
        _close(emulator)
        raise EmulatorError(
            f"cannot write {str(Path(state_dir) / 'endpoint.json')!r}: {e.strerror or e}"
        ) from None
    emulator.start_runners()
    # stop() waits for serve_forever's next poll: 50 ms, not the default half second
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="emulator-http",
        daemon=True,
    )
    thread.start()
    return EmulatorHandle(
        emulator.endpoint,
        emulator.token,
        Path(state_dir),
        emulator,
        thread,
        grpc_endpoint=emulator.grpc_endpoint,
        tls_ca=tls.ca if tls is not None else None,
        console_token=emulator.console_token,
    )


def _close(emulator: Any) -> None:
    """Undo a start that failed half-way: the HTTP socket (if bound), then the rest."""
    if emulator.httpd is not None:
        emulator.httpd.server_close()
    emulator.shutdown()


def write_endpoint_file(
    state_dir: Path, endpoint: str, token: str, console_token: str = "", **grpc: str
) -> Path:
    """``endpoint.json`` (0600): ``endpoint``, ``token`` (the API token) and ``console_token``
    (the console link's, read-only pages); with gRPC, ``grpc_endpoint`` (host:port),
    ``grpc_ca`` (the emulator's CA) and ``grpc_roots`` (public roots + that CA)."""
    from hydra_vertex.files import atomic_write_text

    info = {"endpoint": endpoint, "token": token, "console_token": console_token, **grpc}
    data = json.dumps(info)
    return atomic_write_text(state_dir / "endpoint.json", data, mode=0o600)


def connect(
    state_dir: str | os.PathLike[str],
    project: str = "local-project",
    location: str = "us-central1",
    api_transport: str = "rest",
    **init_kwargs: Any,
) -> dict[str, str]:
    """``aiplatform.init`` against the emulator whose ``endpoint.json`` is in ``state_dir``.

    It also sets ``STORAGE_EMULATOR_HOST`` (scheme included) to the emulator's HTTP endpoint, so
    google-cloud-storage (``PipelineJob.submit()``'s bucket check, uploads) talks to its Cloud
    Storage subset instead of Google's host (where it would wait on retries with no network).

    ``api_transport="grpc"`` uses the SDK's default transport, gRPC over TLS, to the emulator's
    gRPC port. gRPC trusts the emulator's CA through its default trust store:
    ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` is pointed at ``grpc_roots`` (the public roots plus the
    emulator's CA). gRPC reads that variable once, when the process makes its first TLS
    connection, so connect before any other gRPC call of the process.
    """
    path = Path(state_dir) / "endpoint.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EmulatorError(
            f"cannot read {str(path)!r} ({e}); start one with 'hydra-vertex emulator "
            f"--state-dir {state_dir}'"
        ) from None
    from google.cloud import aiplatform

    from hydra_vertex.vertex import emulator_init_kwargs

    kwargs = emulator_init_kwargs(info["endpoint"], info.get("token"))
    if api_transport == "grpc":
        if not info.get("grpc_endpoint"):
            raise EmulatorError(
                f"the emulator of {str(path)!r} serves no gRPC (started without it); connect "
                "with api_transport='rest' or start it with gRPC"
            )
        trust_emulator_ca(info["grpc_roots"], info["grpc_ca"])
        kwargs.update(api_endpoint=info["grpc_endpoint"], api_transport="grpc")
    elif api_transport != "rest":
        raise EmulatorError(f"api_transport must be 'rest' or 'grpc', got {api_transport!r}")
    os.environ["STORAGE_EMULATOR_HOST"] = info["endpoint"]  # Cloud Storage: the HTTP endpoint
    aiplatform.init(project=project, location=location, **kwargs, **init_kwargs)
    return {
        "endpoint": info["endpoint"],
        "token": info.get("token", ""),
        "grpc_endpoint": info.get("grpc_endpoint", ""),
    }


def trust_emulator_ca(roots: str, ca: str) -> str:
    """Make gRPC's default trust store (``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``) trust the
    emulator's CA; returns the bundle it names. Unset: ``roots`` (public roots + the CA). Set to
    a bundle without the CA: a copy of that bundle with the CA appended, beside ``roots``."""
    variable = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"
    current = os.environ.get(variable)
    bundle = roots
    if current and os.path.abspath(current) != os.path.abspath(roots):
        try:
            text, ca_text = Path(current).read_text(), Path(ca).read_text()
        except OSError as e:
            raise EmulatorError(f"cannot read the gRPC trust bundles ({e})") from None
        if ca_text.strip() in text:
            return current
        from hydra_vertex.files import atomic_write_text

        extended = Path(roots).with_name("roots-extended.pem")
        sep = "" if text.endswith("\n") or not text else "\n"
        bundle = str(atomic_write_text(extended, text + sep + ca_text))
    os.environ[variable] = bundle
    return bundle
