"""Requests and their attribution: independent of the order spans arrive in."""

from __future__ import annotations

import itertools
from functools import reduce

from app.settings import AttributionConfig
from app.traces.attribution import NO_ENDPOINT, facts_from_span, merge, with_mapped_team
from app.traces.spans import KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, Span

CFG = AttributionConfig()
T = "f" * 32


def _span(span_id: str, kind: int, parent: str | None, start: int, **attrs: object) -> Span:
    return Span(
        T,
        span_id,
        parent,
        f"span {span_id}",
        kind,
        start,
        start + 5,
        attributes=dict(attrs),
        resource={"service.name": "svc"},
    )  # type: ignore[arg-type]


ROOT = _span(
    "0000000000000001", KIND_SERVER, None, 100, **{"http.route": "/v1/chat", "enduser.id": "u-1"}
)
INNER = _span(
    "0000000000000002",
    KIND_SERVER,
    "0000000000000001",
    110,
    **{"http.route": "/internal/rank", "user.id": "svc-account"},
)
CALL = _span(
    "0000000000000003",
    KIND_CLIENT,
    "0000000000000002",
    120,
    **{"llm.user": "u-9", "team.id": "search"},
)


def test_root_server_span_wins_in_every_order() -> None:
    results = {
        reduce(merge, [facts_from_span(s, CFG) for s in order])
        for order in itertools.permutations([ROOT, INNER, CALL])
    }
    assert len(results) == 1
    (facts,) = results
    assert (facts.endpoint, facts.root_span_id, facts.user_id, facts.team) == (
        "/v1/chat",
        "0000000000000001",
        "u-1",
        "search",
    )
    assert facts.service == "svc"


def test_trace_without_server_span_has_no_endpoint() -> None:
    job = _span("0000000000000004", KIND_INTERNAL, None, 50, **{"http.route": "/ignored"})
    facts = reduce(merge, [facts_from_span(s, CFG) for s in (CALL, job)])
    assert facts.endpoint == NO_ENDPOINT
    assert facts.root_span_id == "0000000000000004"
    assert facts.user_id == "u-9"  # from the call span, the only one that names a user


def test_endpoint_falls_back_to_url_path_then_name() -> None:
    by_path = _span("0000000000000005", KIND_SERVER, None, 1, **{"url.path": "/p"})
    by_name = _span("0000000000000006", KIND_SERVER, None, 1)
    assert facts_from_span(by_path, CFG).endpoint == "/p"
    assert facts_from_span(by_name, CFG).endpoint == "span 0000000000000006"


def test_configured_attribute_names() -> None:
    cfg = AttributionConfig(user_attributes=["app.customer"], team_attributes=["org"])
    span = _span(
        "0000000000000007",
        KIND_SERVER,
        None,
        1,
        **{"app.customer": "c-1", "enduser.id": "ignored", "org": "acme"},
    )
    facts = facts_from_span(span, cfg)
    assert (facts.user_id, facts.team) == ("c-1", "acme")


def test_team_from_user_map_only_when_no_span_names_one() -> None:
    facts = facts_from_span(ROOT, CFG)
    mapped = with_mapped_team(facts, {"u-1": "payments"})
    assert mapped.team == "payments"
    named = merge(mapped, facts_from_span(CALL, CFG))
    assert with_mapped_team(named, {"u-1": "payments"}).team == "search"
