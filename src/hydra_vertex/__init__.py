"""hydra-vertex: tune Hydra apps on Vertex AI (or a local emulator), then retrain with the winner.

The public API is imported lazily so that the trial shim starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "run", "schedule", "submit"]

if TYPE_CHECKING:  # pragma: no cover
    from hydra_vertex.api import run, schedule, submit


def __getattr__(name: str) -> Any:
    if name in ("run", "submit", "schedule"):
        from hydra_vertex import api

        return getattr(api, name)
    raise AttributeError(f"module 'hydra_vertex' has no attribute {name!r}")
