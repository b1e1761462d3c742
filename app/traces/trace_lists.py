"""A trace's request facts as the row path keeps them while a batch is built
(`app.traces.batch`): a list changed in place as the trace's spans come, merged the way
`app.traces.attribution.merge` merges `RequestFacts`.

The list: [start_ns, root_key, root_span_id, endpoint, service, duration_ms, user_id, user_key,
team, team_key], `RequestFacts` without the trace id, with the start in nanoseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.traces.attribution import NO_ROOT_KEY
from app.traces.spans import AttrValue

START, ROOT_KEY, USER, USER_KEY, TEAM, TEAM_KEY = 0, 1, 6, 7, 8, 9
NONE4 = (None, None, None, None)  # no user, user key, team, team key
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_ns(ns: int) -> datetime:
    """`Span.started_at` of a start in nanoseconds (same value, one operation)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def first_attr(
    attrs: dict[str, AttrValue], resource: dict[str, AttrValue], names: tuple[str, ...]
) -> str | None:
    """`attribution._first_attr` without a `Span`: a span attribute, else the resource's."""
    for name in names:
        value = attrs[name] if name in attrs else resource.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def merge_into(a: list[Any], b: list[Any]) -> None:
    """`attribution.merge(a, b)` on the row path's lists, into `a`."""
    if a[ROOT_KEY] <= b[ROOT_KEY]:
        if a[ROOT_KEY] == NO_ROOT_KEY:
            a[START] = min(a[START], b[START])
    else:
        start = b[START] if b[ROOT_KEY] != NO_ROOT_KEY else min(a[START], b[START])
        a[0:6] = b[0:6]
        a[START] = start
    ka, kb = a[USER_KEY], b[USER_KEY]
    if kb is not None and (ka is None or kb < ka):
        a[USER], a[USER_KEY] = b[USER], kb
    ka, kb = a[TEAM_KEY], b[TEAM_KEY]
    if kb is not None and (ka is None or kb < ka):
        a[TEAM], a[TEAM_KEY] = b[TEAM], kb
