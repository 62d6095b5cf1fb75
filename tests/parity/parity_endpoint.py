"""What the vendored samples import to reach the emulator, the one thing they gain besides the
image: ``EMULATOR``, the GAPIC clients' transport and credentials (REST and the emulator's bearer
token; the endpoint itself is each snippet's own ``api_endpoint`` parameter); ``NOTEBOOK``, the
values a notebook's reader fills in. The ``sdk`` fixture fills both."""

from __future__ import annotations

from typing import Any

EMULATOR: dict[str, Any] = {}
NOTEBOOK: dict[str, str] = {}
