"""The emulator a local run talks to: the one ``HYDRA_VERTEX_EMULATOR`` names, else the one whose
``endpoint.json`` is in the state directory (if it answers), else one started in this process.

Shared by ``hydra-vertex run --local`` and the Hydra sweeper (``hydra/sweeper=vertex``).
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hydra_vertex.local_conventions import storage_root
from hydra_vertex.vertex import EMULATOR_ENV, EMULATOR_TOKEN_ENV

__all__ = ["DEFAULT_STATE_DIR", "EmulatorInfo", "alive", "emulator", "environ", "pointed_at"]

DEFAULT_STATE_DIR = Path(".hydra-vertex") / "emulator"


@dataclass(frozen=True)
class EmulatorInfo:
    endpoint: str
    token: str
    storage_root: Path | None  # None when only the endpoint is known
    started_here: bool


def alive(endpoint: str, token: str) -> bool:
    request = urllib.request.Request(
        f"{endpoint}/v1/projects/ping/locations/us-central1/customJobs?pageSize=1",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def emulator(state_dir: Path, seed: int | None) -> Iterator[EmulatorInfo]:
    """The emulator to use, started here only when none is running."""
    explicit = os.environ.get(EMULATOR_ENV)
    if explicit:
        yield EmulatorInfo(
            explicit.rstrip("/"), os.environ.get(EMULATOR_TOKEN_ENV, ""), None, False
        )
        return
    endpoint_file = state_dir / "endpoint.json"
    if endpoint_file.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads(endpoint_file.read_text())
            if alive(info["endpoint"], info.get("token", "")):
                yield EmulatorInfo(
                    info["endpoint"], info.get("token", ""), storage_root(state_dir), False
                )
                return
    from hydra_vertex.emulator import start

    handle = start(state_dir, seed=seed)
    try:
        yield EmulatorInfo(handle.endpoint, handle.token, handle.storage_root, True)
    finally:
        handle.stop()


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set while inside, as it was afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pointed_at(emu: EmulatorInfo) -> contextlib.AbstractContextManager[None]:
    """Every Vertex call of hydra-vertex goes to ``emu`` while inside."""
    return environ({EMULATOR_ENV: emu.endpoint, EMULATOR_TOKEN_ENV: emu.token})
