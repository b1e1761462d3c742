"""Which request a span belongs to, and the request's endpoint, user and team.

A request is one trace. Its root is the best root candidate among the trace's spans: a SERVER
span without a parent, else a SERVER span, else a span without a parent. Its endpoint comes from
the root when the root is a SERVER span (`http.route`, else `url.path`, else the span name); a
trace with no server span gets the endpoint `(none)`. User and team come from the configured
attribute lists, taken from the best-ranked span that carries one (the root first), else the team
from the user→team map.

Every choice is made by comparing sortable keys (rank, start time, span id), so merging what one
batch saw with what another saw gives the same answer in any order: `merge` is associative and
commutative.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from app.settings import AttributionConfig
from app.traces.spans import KIND_SERVER, Span

NO_ENDPOINT = "(none)"
NO_ROOT_KEY = "9"  # sorts after every real candidate
# A team from user_teams loses to any team attribute on a span; among mapped teams, the one of
# the best user candidate wins, so the team always follows the request's chosen user.
_MAP_TEAM_PREFIX = "8:"


class RequestFacts(NamedTuple):
    """A tuple (cheap to build, to pickle to and from worker processes, and to hand to the
    database driver as one row), in the column order of the `requests` table."""

    trace_id: str
    started_at: datetime
    root_key: str
    root_span_id: str | None
    endpoint: str
    service: str | None
    duration_ms: int | None
    user_id: str | None
    user_key: str | None
    team: str | None
    team_key: str | None


def _rank(span: Span) -> int:
    if span.kind == KIND_SERVER:
        return 0 if span.parent_span_id is None else 1
    return 2 if span.parent_span_id is None else 5


def _key(span: Span) -> str:
    return f"{_rank(span)}:{span.start_ns:020d}:{span.span_id}"


def _first_attr(span: Span, names: list[str]) -> str | None:
    for name in names:
        value = span.attr(name)
        if value not in (None, ""):
            return str(value)
    return None


def facts_from_span(span: Span, cfg: AttributionConfig) -> RequestFacts:
    """What one span says about its trace's request."""
    rank = _rank(span)
    is_root = rank < 5
    key = _key(span)
    endpoint = NO_ENDPOINT
    if span.kind == KIND_SERVER:
        route = span.attr("http.route") or span.attr("url.path") or span.attr("http.target")
        endpoint = str(route) if route else (span.name or NO_ENDPOINT)
    user = _first_attr(span, cfg.user_attributes)
    team = _first_attr(span, cfg.team_attributes)
    service = span.resource.get("service.name")
    return RequestFacts(
        trace_id=span.trace_id,
        started_at=span.started_at,
        root_key=key if is_root else NO_ROOT_KEY,
        root_span_id=span.span_id if is_root else None,
        endpoint=endpoint if is_root else NO_ENDPOINT,
        service=str(service) if is_root and service is not None else None,
        duration_ms=span.duration_ms if is_root else None,
        user_id=user,
        user_key=key if user else None,
        team=team,
        team_key=key if team else None,
    )


def merge(a: RequestFacts, b: RequestFacts) -> RequestFacts:
    """Combine two views of the same request; the order of the arguments does not matter."""
    assert a.trace_id == b.trace_id
    root = a if a.root_key <= b.root_key else b
    started = root.started_at if root.root_key != NO_ROOT_KEY else min(a.started_at, b.started_at)
    user = _better(a.user_key, b.user_key, a, b)
    team = _better(a.team_key, b.team_key, a, b)
    return root._replace(
        started_at=started,
        user_id=user.user_id if user else None,
        user_key=user.user_key if user else None,
        team=team.team if team else None,
        team_key=team.team_key if team else None,
    )


def _better(
    ka: str | None, kb: str | None, a: RequestFacts, b: RequestFacts
) -> RequestFacts | None:
    if ka is None and kb is None:
        return None
    if kb is None or (ka is not None and ka <= kb):
        return a
    return b


def with_mapped_team(facts: RequestFacts, user_teams: dict[str, str]) -> RequestFacts:
    """Fill the team from the user→team map when no span named one.

    The mapped team's key is the user's key behind a prefix that sorts after every span key,
    so a later, better user candidate brings its own mapped team (even "no team") with it.
    """
    has_span_team = facts.team_key is not None and not facts.team_key.startswith(_MAP_TEAM_PREFIX)
    if has_span_team or facts.user_id is None or facts.user_key is None:
        return facts
    # The tuple built whole (the team and its key are the last two fields): `_replace` costs
    # 3x more, and this runs for most requests of an ingest.
    return RequestFacts(
        *facts[:9], user_teams.get(facts.user_id), _MAP_TEAM_PREFIX + facts.user_key
    )
