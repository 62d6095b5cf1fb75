"""A job's suggestion seed: its ``hydra-vertex-seed`` label, else the emulator's ``--seed``, else
random; stored with the job (``internal.seed``) so a restart suggests the same trials."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from hydra_vertex.emulator.router import ApiError

LABEL = "hydra-vertex-seed"
_SEED = re.compile(r"[0-9]{1,18}")


def job_seed(labels: Mapping[str, Any], default: int | None) -> int:
    """The seed of a job created with ``labels``; 400 when the label is not a seed."""
    value = labels.get(LABEL)
    if value is None:
        return default if default is not None else secrets.randbelow(2**31)
    if not isinstance(value, str) or not _SEED.fullmatch(value):
        shown = value if not isinstance(value, str) or len(value) <= 40 else f"{value[:40]}..."
        raise ApiError(
            400,
            f"label {LABEL}={shown!r} must be a whole number of 1-18 digits (the seed of the "
            "job's trial suggestions)",
        )
    return int(value)
