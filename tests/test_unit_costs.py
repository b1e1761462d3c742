"""The counting rules of cost per 1,000 requests, on hand-made traces with hand-computed costs.

tests/fixtures/otlp/counting.json holds five traces (UTC):
  A 2025-11-20 /v1/chat   u-1 payments  gpt-4o-mini 1000 in/200 out
                                         claude-sonnet-4-5 2000 in (1000 cache read)/100 out
  B 2025-11-20 /v1/chat   u-2           no LLM call
  C 2025-11-20 /v1/search u-1 payments  llama-3.1-70b on vllm 4000/400 (no catalog price)
  D 2025-11-20 no server span           gpt-4o-mini 500/50
  E 2025-11-21 /v1/search u-3           gpt-4o-mini 100/10
Catalog prices: gpt-4o-mini $0.15/M in, $0.60/M out; claude-sonnet-4-5 $3/M in, $0.30/M cache
read, $15/M out.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.ingest import ingest_paths
from app.reports.unit_costs import Scope, UnitCostRow, parse_dimensions, unit_costs
from app.settings import PriceOverride, Settings
from tests.conftest import FIXTURES

OTLP = FIXTURES / "otlp"
MINI_A = Decimal("0.00015") + Decimal("0.00012")
SONNET_A = Decimal("0.003") + Decimal("0.0003") + Decimal("0.0015")
MINI_D = Decimal("0.000075") + Decimal("0.00003")
MINI_E = Decimal("0.000015") + Decimal("0.000006")
TOTAL = MINI_A + SONNET_A + MINI_D + MINI_E


def _by(rows: list[UnitCostRow], *key: str) -> dict[tuple[str, ...], UnitCostRow]:
    return {tuple(r.group[k] for k in key): r for r in rows}


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    result = ingest_paths(engine, Settings(), [OTLP / "counting.json"])
    assert result.ok
    assert result.calls_new == 5
    assert result.requests_new == 5
    return engine


def test_by_endpoint_counts_every_request(loaded: Engine) -> None:
    rows = _by(unit_costs(loaded, ["endpoint"]), "endpoint")
    assert set(rows) == {("/v1/chat",), ("/v1/search",), ("(none)",)}
    chat = rows[("/v1/chat",)]
    assert (chat.requests, chat.llm_calls) == (2, 2)  # B made no call but counts
    assert chat.cost_usd == MINI_A + SONNET_A
    assert chat.cost_per_1k_requests == (MINI_A + SONNET_A) * 1000 / 2
    search = rows[("/v1/search",)]
    assert (search.requests, search.llm_calls, search.unpriced_calls) == (2, 2, 1)
    assert search.cost_usd == MINI_E
    none = rows[("(none)",)]  # the trace without a server span is one request
    assert (none.requests, none.cost_usd) == (1, MINI_D)
    assert sum(r.cost_usd for r in rows.values()) == TOTAL


def test_by_model_counts_requests_that_called_it(loaded: Engine) -> None:
    rows = _by(unit_costs(loaded, ["model"]), "model")
    mini = rows[("gpt-4o-mini",)]
    assert (mini.requests, mini.llm_calls) == (3, 3)
    assert mini.cost_usd == MINI_A + MINI_D + MINI_E
    assert mini.cost_per_1k_requests == (MINI_A + MINI_D + MINI_E) * 1000 / 3
    sonnet = rows[("claude-sonnet-4-5",)]
    assert (sonnet.requests, sonnet.cost_usd) == (1, SONNET_A)
    assert sonnet.input_tokens == 2000
    llama = rows[("llama-3.1-70b",)]
    assert (llama.requests, llama.unpriced_calls, llama.cost_usd) == (1, 1, Decimal(0))
    # A request that called two models counts once per model; costs still add up.
    assert sum(r.requests for r in rows.values()) == 5
    assert sum(r.cost_usd for r in rows.values()) == TOTAL


def test_by_endpoint_and_model(loaded: Engine) -> None:
    rows = _by(unit_costs(loaded, ["endpoint", "model"]), "endpoint", "model")
    assert set(rows) == {
        ("/v1/chat", "gpt-4o-mini"),
        ("/v1/chat", "claude-sonnet-4-5"),
        ("/v1/search", "llama-3.1-70b"),
        ("/v1/search", "gpt-4o-mini"),
        ("(none)", "gpt-4o-mini"),
    }
    assert rows[("/v1/chat", "claude-sonnet-4-5")].cost_per_1k_requests == SONNET_A * 1000
    assert rows[("/v1/chat", "gpt-4o-mini")].cost_usd == MINI_A
    assert sum(r.cost_usd for r in rows.values()) == TOTAL


def test_user_team_and_provider_views(loaded: Engine) -> None:
    users = _by(unit_costs(loaded, ["user"]), "user")
    assert users[("u-1",)].requests == 2
    assert users[("u-1",)].cost_usd == MINI_A + SONNET_A
    assert users[("(none)",)].requests == 1  # trace D names no user
    teams = _by(unit_costs(loaded, ["team"]), "team")
    assert teams[("payments",)].requests == 2
    providers = _by(unit_costs(loaded, ["provider"]), "provider")
    assert providers[("openai",)].cost_usd == MINI_A + MINI_D + MINI_E
    assert providers[("vllm",)].unpriced_calls == 1
    for view in (users, teams, providers):
        assert sum(r.cost_usd for r in view.values()) == TOTAL


def test_date_range_is_utc_since_inclusive_until_exclusive(loaded: Engine) -> None:
    day2 = unit_costs(loaded, ["endpoint"], Scope(since=date(2025, 11, 21)))
    assert [(r.group["endpoint"], r.requests, r.cost_usd) for r in day2] == [
        ("/v1/search", 1, MINI_E)
    ]
    day1 = unit_costs(loaded, ["endpoint"], Scope(until=date(2025, 11, 21)))
    assert sum(r.requests for r in day1) == 4


def test_filters_on_call_dimensions_narrow_requests_and_cost(loaded: Engine) -> None:
    rows = unit_costs(loaded, ["endpoint"], Scope(filters={"model": ["claude-sonnet-4-5"]}))
    assert [(r.group["endpoint"], r.requests, r.cost_usd) for r in rows] == [
        ("/v1/chat", 1, SONNET_A)
    ]


def test_price_override_prices_a_self_hosted_model(engine: Engine) -> None:
    settings = Settings(
        pricing={
            "overrides": [
                PriceOverride(
                    provider="vllm",
                    model="llama-3.1-*",
                    input_per_mtok="0.60",
                    output_per_mtok="0.80",
                )
            ]
        }
    )
    ingest_paths(engine, settings, [OTLP / "counting.json"])
    rows = _by(unit_costs(engine, ["model"]), "model")
    llama = rows[("llama-3.1-70b",)]
    assert llama.unpriced_calls == 0
    assert llama.cost_usd == Decimal("0.0024") + Decimal("0.00032")


def test_arrival_order_does_not_change_totals(engine: Engine, tmp_path: Path) -> None:
    # LLM calls first (their roots unknown yet), roots in a later run.
    ingest_paths(engine, Settings(), [OTLP / "split_calls.jsonl"])
    early = _by(unit_costs(engine, ["endpoint"]), "endpoint")
    assert set(early) == {("(none)",)}  # nothing can be attributed before the roots arrive
    ingest_paths(engine, Settings(), [OTLP / "split_roots.json"])
    late = unit_costs(engine, ["endpoint", "model", "user"])
    ingest_paths(engine, Settings(), [OTLP / "counting.json"])  # everything again: no change
    assert unit_costs(engine, ["endpoint", "model", "user"]) == late


def test_reingesting_changes_nothing(loaded: Engine) -> None:
    before = unit_costs(loaded, ["endpoint", "model"])
    again = ingest_paths(loaded, Settings(), [OTLP / "counting.json"])
    assert (again.calls_new, again.requests_new, again.calls_duplicate) == (0, 0, 5)
    assert unit_costs(loaded, ["endpoint", "model"]) == before


def test_parse_dimensions() -> None:
    assert parse_dimensions("endpoint, model,endpoint") == ["endpoint", "model"]
    with pytest.raises(ValueError, match="unknown dimension"):
        parse_dimensions("endpoint,region")
