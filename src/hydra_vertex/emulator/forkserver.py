"""Pipeline processes started warm: forked from a server that has kfp, the ``aiplatform_v1``
clients and hydra-vertex's steps imported already.

A fresh interpreter spends about a second importing kfp and the Vertex clients before a
component does anything; a pipeline of four components paid that four times. The emulator starts
multiprocessing's fork server (``forkserver``, with :data:`PRELOAD`) when it starts, and each
pipeline job's process (:func:`~hydra_vertex.emulator.pipeline_main.forked`) is forked from it;
that process forks each lightweight Python component in turn
(:mod:`~hydra_vertex.emulator.pipeline_events`), so a component starts in milliseconds with
everything it imports already there. Where ``forkserver`` is not available (not POSIX), the
pipeline process is a fresh interpreter, as before.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["PRELOAD", "WarmProcess", "available", "start", "warm"]

# What the components import (profiled with ``PYTHONPROFILEIMPORTTIME=1`` in the emulator's
# environment: each task's log then lists what it still imported): kfp's executor, the v1 GAPIC
# clients and their REST transport, GCPC's gcp_resources proto, Hydra's override parser, and
# hydra-vertex's steps with the modules they import inside their functions.
PRELOAD = [
    "__main__",
    "kfp.dsl.executor_main",
    "kfp.local",
    "kfp.components",
    "google.cloud.aiplatform_v1",
    "google.auth.transport.requests",
    "google.oauth2.credentials",
    "google.protobuf.json_format",
    "google_cloud_pipeline_components.proto.gcp_resources_pb2",
    "hydra.core.override_parser.overrides_parser",
    "antlr4.LL1Analyzer",
    "pathspec",
    "netrc",
    "_strptime",
    "hydra_vertex.emulator.pipeline_main",
    "hydra_vertex.emulator.pipeline_events",
    "hydra_vertex._study_spec",
    "hydra_vertex.envs",
    "hydra_vertex.overrides",
    "hydra_vertex.steps.best",
    "hydra_vertex.steps.build",
    "hydra_vertex.steps.retrain",
    "hydra_vertex.steps.tune",
    "hydra_vertex.gcp_resources",
    "hydra_vertex.images",
    "hydra_vertex.jobs",
    "hydra_vertex.machine",
    "hydra_vertex.polling",
    "hydra_vertex.retries",
    "hydra_vertex.search_space",
    "hydra_vertex.trials",
    "hydra_vertex.tuning_options",
    "hydra_vertex.vertex",
]
_lock = threading.Lock()


def available() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    with _lock:
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def warm() -> None:
    """Start the fork server (it imports :data:`PRELOAD` in the background); idempotent."""
    if not available():
        return
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


class WarmProcess:
    """A process forked from the warm server, with the parts of ``subprocess.Popen`` that the
    pipeline runner uses (``pid``, ``poll``, ``wait``, ``kill``)."""

    def __init__(self, process: Any) -> None:
        self._process = process
        self.pid: int = process.pid

    @property
    def returncode(self) -> int | None:
        code = self._process.exitcode
        return None if code is None else int(code)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self.returncode
        if code is None:
            raise subprocess.TimeoutExpired(f"pipeline process {self.pid}", timeout or 0)
        return code

    def kill(self) -> None:
        self._process.kill()


def start(target: Any, args: Sequence[Any], name: str) -> WarmProcess:
    """Run ``target(*args)`` in a process forked from the warm server (``target`` must be a
    module-level function: it travels by name)."""
    process = _context().Process(target=target, args=tuple(args), name=name, daemon=True)
    process.start()
    return WarmProcess(process)
