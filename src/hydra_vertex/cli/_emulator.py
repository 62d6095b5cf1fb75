"""`hydra-vertex` subcommands: emulator (placeholder until its issue lands)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    del sub
