"""Cron expressions as Vertex AI schedules take them: five fields, optionally prefixed
``TZ=Zone/Name`` or ``CRON_TZ=Zone/Name`` (an IANA zone). One parser for the CLI's check and the
emulator's scheduler."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_TZ_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")


class CronError(ValueError):
    """Not a cron expression Vertex accepts; the message names the rule."""


def parse(cron: str) -> tuple[str, ZoneInfo]:
    """``(five-field expression, zone)``; the zone is UTC without a prefix."""
    from croniter import croniter

    text = (cron or "").strip()
    zone = ZoneInfo("UTC")
    m = _TZ_PREFIX.match(text)
    if m:
        try:
            zone = ZoneInfo(m.group(1))
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(
                f"unknown time zone {m.group(1)!r} (use an IANA name such as "
                "TZ=America/New_York)"
            ) from None
        text = m.group(2).strip()
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise CronError(
            "not a cron expression of five fields (minute hour day-of-month month day-of-week), "
            "optionally prefixed with TZ=Zone/Name; e.g. '0 3 * * 1'"
        )
    return text, zone
