"""Cron expressions as Vertex AI schedules take them: five fields, optionally prefixed
``TZ=Zone/Name`` or ``CRON_TZ=Zone/Name`` (an IANA zone). One parser for the CLI's check and the
emulator's scheduler."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_TZ_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")


#: The five fields: name and what each takes (croniter's ranges).
FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-6 or SUN-SAT (7 is Sunday too)"),
)


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
    fields = text.split()
    if len(fields) != 5:
        raise CronError(
            f"has {len(fields)} field(s), not five (minute hour day-of-month month day-of-week), "
            "optionally prefixed with TZ=Zone/Name; e.g. '0 3 * * 1'"
        )
    for i, (value, (name, allowed)) in enumerate(zip(fields, FIELDS, strict=True)):
        alone = ["*"] * 5
        alone[i] = value
        if not croniter.is_valid(" ".join(alone)):
            raise CronError(
                f"{value!r} is not a valid {name} (field {i + 1} of five): allowed {allowed}, "
                "with '*', ',', '-' and '/'"
            )
    if not croniter.is_valid(text):  # each field fits alone, the whole does not
        raise CronError(
            "is not a cron expression croniter accepts (minute hour day-of-month month "
            "day-of-week); e.g. '0 3 * * 1'"
        )
    return text, zone
