"""The backend a contract test runs against (see conftest.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIVE = ("HYDRA_VERTEX_LIVE_PROJECT", "HYDRA_VERTEX_LIVE_REGION", "HYDRA_VERTEX_LIVE_BUCKET")
IMAGE = os.environ.get("HYDRA_VERTEX_LIVE_IMAGE", "python:3.12-slim")


@dataclass(frozen=True)
class Backend:
    name: str  # "emulator" or "live"
    project: str
    location: str
    bucket: str  # gs://..., for staging and pipeline roots
    image: str  # runs python3
    state_dir: Path | None = None  # the emulator's
    endpoint: str = ""

    @property
    def poll_seconds(self) -> float:
        return 0.5 if self.name == "emulator" else 30.0

    def worker_pool(self, script: str) -> list[dict[str, Any]]:
        """One worker pool that runs ``python3 -c script`` (trial arguments come after it)."""
        return [
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {"image_uri": self.image, "command": ["python3", "-c", script]},
            }
        ]
