"""How the kit writes times, durations and anything it echoes back: each format once.

Every module that shows a time, a duration or an error line imports it from here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


# -- times --------------------------------------------------------------------------------
def iso_utc(at: datetime) -> str:
    """``2025-10-08T14:03:22.481Z``: milliseconds, or microseconds when they are not round."""
    at = at.astimezone(timezone.utc)
    spec = "milliseconds" if at.microsecond % 1000 == 0 else "microseconds"
    return at.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def fmt_time(at: datetime | None) -> str:
    """``2025-10-08 09:41:27.118 UTC`` (microseconds when they are not round)."""
    if at is None:
        return "an unknown time"
    at = at.astimezone(timezone.utc)
    spec = "milliseconds" if at.microsecond % 1000 == 0 else "microseconds"
    return at.replace(tzinfo=None).isoformat(sep=" ", timespec=spec) + " UTC"


def fmt_duration(seconds: float) -> str:
    """``46 ms``, ``3.2 s``, ``4 min 10 s``, ``2 h 5 min``, ``3 days 4 h``."""
    s = abs(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms" if s >= 0.001 else f"{s * 1e6:.0f} µs"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    days = int(s // 86400)
    return f"{days} day{'s' if days != 1 else ''} {int(s % 86400 // 3600)} h"


def as_utc(value: Any) -> datetime | None:
    """A timestamp from a row or from JSON (ISO text), as an aware UTC datetime; None if it is not one."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
