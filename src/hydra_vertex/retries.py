"""Retries for calls to Vertex: 429 and 5xx answers and dropped connections are retried with
capped exponential back-off; anything else (a 400, a 404) is raised at once.

``google-api-core`` retries some of these inside a single call; the aiplatform SDK's own job-wait
loop does not, and a tuning job runs for hours, so every poll of the components goes through here.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

RETRY_CODES = (429, 500, 502, 503, 504)


def is_transient(error: BaseException) -> bool:
    """True for answers worth retrying: 429, 5xx, timeouts and connection failures."""
    from google.api_core import exceptions as gexc

    if isinstance(error, gexc.GoogleAPICallError):
        code = getattr(error, "code", None)
        return int(code) in RETRY_CODES if isinstance(code, int) else False
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    try:
        import requests

        return isinstance(error, requests.exceptions.ConnectionError | requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover - requests ships with google-api-core
        return False


def call(
    fn: Callable[[], T],
    what: str,
    *,
    attempts: int = 8,
    initial: float = 1.0,
    maximum: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, retried on transient errors up to ``attempts`` times (jittered back-off)."""
    delay = initial
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:
            if not is_transient(e) or attempt == attempts:
                raise
            wait = min(maximum, delay) * (0.5 + random.random() / 2)
            print(
                f"hydra-vertex: {what} failed ({type(e).__name__}: {str(e).splitlines()[0][:200]});"
                f" retry {attempt}/{attempts - 1} in {wait:.1f}s",
                file=sys.stderr,
                flush=True,
            )
            sleep(wait)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover
