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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra_vertex.errors import EmulatorError

__all__ = ["EmulatorHandle", "connect", "start", "write_endpoint_file"]


@dataclass
class EmulatorHandle:
    """A running emulator: where it listens, its API token, its state directory."""

    endpoint: str
    token: str
    state_dir: Path
    _emulator: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

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
) -> EmulatorHandle:
    """Start an emulator in a background thread; writes ``state_dir/endpoint.json``."""
    from hydra_vertex.emulator.server import Emulator

    emulator = Emulator(state_dir, image_map=images, token=token, seed=seed)
    try:
        httpd = emulator.serve(host, port)
    except OSError as e:
        emulator.shutdown()
        raise EmulatorError(
            f"cannot listen on {host}:{port}: {e.strerror or e} (choose another --port, or 0 "
            f"for a free one)"
        ) from None
    except BaseException:
        emulator.shutdown()
        raise
    write_endpoint_file(Path(state_dir), emulator.endpoint, emulator.token)
    emulator.start_runners()
    thread = threading.Thread(target=httpd.serve_forever, name="emulator-http", daemon=True)
    thread.start()
    return EmulatorHandle(emulator.endpoint, emulator.token, Path(state_dir), emulator, thread)


def write_endpoint_file(state_dir: Path, endpoint: str, token: str) -> Path:
    from hydra_vertex.files import atomic_write_text

    data = json.dumps({"endpoint": endpoint, "token": token})
    return atomic_write_text(state_dir / "endpoint.json", data, mode=0o600)


def connect(
    state_dir: str | os.PathLike[str],
    project: str = "local-project",
    location: str = "us-central1",
    **init_kwargs: Any,
) -> dict[str, str]:
    """``aiplatform.init`` against the emulator whose ``endpoint.json`` is in ``state_dir``.

    It also sets ``STORAGE_EMULATOR_HOST`` (scheme included) to the emulator, so
    google-cloud-storage (``PipelineJob.submit()``'s bucket check, uploads) talks to its Cloud
    Storage subset instead of Google's host (where it would wait on retries with no network)."""
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

    os.environ["STORAGE_EMULATOR_HOST"] = info["endpoint"]
    aiplatform.init(
        project=project,
        location=location,
        **emulator_init_kwargs(info["endpoint"], info.get("token")),
        **init_kwargs,
    )
    return {"endpoint": info["endpoint"], "token": info.get("token", "")}
