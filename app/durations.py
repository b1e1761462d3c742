"""Durations as people write them in config and on the command line: 90s, 15m, 2h, 1d."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`"90s"` → 90 seconds. Raises ValueError naming the accepted forms."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not a duration; write a positive number and a unit, "
            "e.g. 60s, 15m, 2h, 1d, 1w"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
