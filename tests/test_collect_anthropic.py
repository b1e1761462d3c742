"""The `anthropic` collector against a local fake of the Anthropic Admin API at the wire
(tests/billing_server.py): cents as decimal strings, pages, restatements, faults, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from app.warehouse.checkpoints import read_checkpoints
from app.warehouse.engine import session_scope
from app.warehouse.tables_billing import BilledCost, BilledUsage
from collectors.anthropic import AnthropicCollector
from collectors.base import RunOutcome
from collectors.billing_common import midnight
from tests.billing_server import (
    KEY,
    TODAY,
    BillingServer,
    FakeClock,
    Fault,
    anthropic_ledger,
    days_before,
    settings_for,
)

INPUT, OUTPUT, SEARCH = (
    "Claude Sonnet 4.5 Usage - Input Tokens",
    "Claude Sonnet 4.5 Usage - Output Tokens",
    "Web Search",
)


@pytest.fixture
def server() -> Iterator[BillingServer]:
    fake = BillingServer(anthropic_ledger(days_before(TODAY, 5)), page_size=2)
    yield fake
    fake.close()


def run(
    engine: Engine,
    server: BillingServer,
    clock: FakeClock | None = None,
    *,
    since: date | None = None,
    timeout: float = 5.0,
    **options: Any,
) -> RunOutcome:
    clock = clock or FakeClock()
    collector = AnthropicCollector(clock=clock, sleep=clock.sleep, timeout=timeout)
    settings = settings_for("anthropic", server.base_url, **{"initial_days": 4, **options})
    return collector.run(engine, settings, since=midnight(since) if since else None)


def rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table.__table__))]


def cost_rows(engine: Engine, day: date) -> dict[str, dict[str, Any]]:
    return {r["line_item"]: r for r in rows(engine, BilledCost) if r["day"] == day}


def checkpoint(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as session:
        return read_checkpoints(session, "anthropic")


def test_cents_strings_become_exact_amounts_across_pages(
    engine: Engine, server: BillingServer
) -> None:
    outcome = run(engine, server)
    assert outcome.ok, outcome.errors
    assert outcome.rows_loaded == 5 * (3 + 1) and outcome.details["api_calls"] == 6
    assert checkpoint(engine) == {"organization": json.dumps({"through": TODAY.isoformat()})}

    day = cost_rows(engine, TODAY)
    assert day[INPUT]["amount_nano"] == 23_105_000_000  # "2310.5" cents = $23.105
    assert day[OUTPUT]["amount_nano"] == 18_750_000_000  # "1875" cents
    assert day[SEARCH]["amount_nano"] == 402_500_000  # "40.25" cents
    assert {k: day[INPUT][k] for k in ("model", "model_raw", "cost_type", "token_type")} == {
        "model": "claude-sonnet-4-5",
        "model_raw": "claude-sonnet-4-5-20250929",
        "cost_type": "tokens",
        "token_type": "uncached_input_tokens",
    }
    assert (day[INPUT]["project"], day[INPUT]["currency"]) == ("wrkspc_01support", "USD")
    assert (day[SEARCH]["cost_type"], day[SEARCH]["model"], day[SEARCH]["project"]) == (
        "web_search",
        None,
        None,
    )
    bucket = max(rows(engine, BilledUsage), key=lambda r: r["bucket_start"])
    assert bucket["bucket_start"] == midnight(TODAY)
    assert (bucket["input_tokens"], bucket["cache_read_tokens"], bucket["cache_write_tokens"]) == (
        770_000 + 1_500_000 + 120_000,  # input includes cache reads and writes, as traces count
        1_500_000,
        120_000,
    )
    assert (bucket["output_tokens"], bucket["requests"], bucket["model"]) == (
        125_000,
        None,
        "claude-sonnet-4-5",
    )

    first, usage = server.seen[0], server.seen[3]
    assert first.url.path == "/v1/organizations/cost_report"
    assert first.headers["x-api-key"] == KEY and first.headers["anthropic-version"] == "2023-06-01"
    start = (TODAY - timedelta(days=4)).isoformat()
    assert first.url.params["starting_at"] == f"{start}T00:00:00Z"
    assert first.url.params["ending_at"] == f"{TODAY + timedelta(days=1)}T00:00:00Z"
    assert first.url.params.get_list("group_by[]") == ["workspace_id", "description"]
    assert usage.url.path == "/v1/organizations/usage_report/messages"
    assert usage.url.params.get_list("group_by[]") == ["model", "workspace_id", "api_key_id"]
    assert [r.url.params.get("page") is not None for r in server.seen[:3]] == [False, True, True]


def test_a_restated_day_replaces_what_was_stored(engine: Engine, server: BillingServer) -> None:
    clock = FakeClock()
    assert run(engine, server, clock).ok
    day = TODAY - timedelta(days=1)
    server.ledger.costs[day][0]["amount"] = "2410.75"
    clock.now += timedelta(hours=3)
    again = run(engine, server, clock)
    assert again.ok and again.details["days_replaced"] == 1 and again.rows_loaded == 4
    assert cost_rows(engine, day)[INPUT]["amount_nano"] == 24_107_500_000
    assert len(rows(engine, BilledCost)) == 15 and len(rows(engine, BilledUsage)) == 5


def test_a_500_on_page_3_of_5_fails_the_run_and_keeps_the_checkpoint(engine: Engine) -> None:
    server = BillingServer(anthropic_ledger(days_before(TODAY, 5)), page_size=1)
    try:
        clock = FakeClock()
        assert run(engine, server, clock).ok
        before = (rows(engine, BilledCost), rows(engine, BilledUsage), checkpoint(engine))
        server.ledger.costs[TODAY][0]["amount"] = "1"
        server.faults.append(Fault("cost_report", nth=3, status=500, times=None))
        clock.now += timedelta(days=2)
        failed = run(engine, server, clock, since=TODAY - timedelta(days=4))
    finally:
        server.close()
    assert not failed.ok and "anthropic GET /v1/organizations/cost_report" in (failed.error or "")
    assert (rows(engine, BilledCost), rows(engine, BilledUsage), checkpoint(engine)) == before


def test_429_with_an_http_date_and_a_timeout_are_retried(sqlite_engine: Engine) -> None:
    server = BillingServer(anthropic_ledger(days_before(TODAY, 5)), page_size=2)
    clock = FakeClock()
    later = format_datetime(clock.now + timedelta(seconds=30), usegmt=True)
    server.faults.append(Fault("cost_report", nth=2, status=429, headers={"Retry-After": later}))
    server.faults.append(Fault("usage_report", nth=3, stall=True))
    try:
        # Long enough that only the stalled request times out, even on a busy machine.
        outcome = run(sqlite_engine, server, clock, timeout=2.0)
    finally:
        server.close()
    assert outcome.ok, outcome.errors
    assert clock.slept[0] == 30.0 and len(clock.slept) == 2
    assert outcome.details["api_calls"] == 8 and outcome.rows_loaded == 20


def test_a_wrong_key_names_the_setting(sqlite_engine: Engine, server: BillingServer) -> None:
    failed = run(sqlite_engine, server, admin_key="sk-ant-admin-wrong")
    assert not failed.ok and len(server.seen) == 1
    assert "fix collectors.anthropic.admin_key" in (failed.error or "")


def test_numbers_strings_unknown_fields_currencies_and_empty_days(
    sqlite_engine: Engine, server: BillingServer
) -> None:
    day = TODAY - timedelta(days=1)
    good = server.ledger.costs[day][0]
    server.ledger.costs[day] = [
        {**good, "inference_geo": "us", "brand_new": [1, 2]},  # unknown fields: ignored
        {**good, "description": "Haiku output", "amount": Decimal("125.5")},  # a number
        {**good, "description": "Batch", "amount": "0.0001"},  # a hundredth of a cent
        {**good, "description": "EU usage", "currency": "eur", "amount": "990"},
        {**good, "amount": "lots"},  # not an amount: rejected
        {**good, "amount": None},  # rejected
    ]
    server.ledger.costs[TODAY - timedelta(days=2)] = []  # an empty day
    server.ledger.usage[day][0]["cache_creation"] = {"ephemeral_1h_input_tokens": 5}
    outcome = run(sqlite_engine, server)
    assert outcome.ok and outcome.rows_rejected == 2
    assert outcome.details["non_usd_cost_lines"] == 1
    stored = cost_rows(sqlite_engine, day)
    assert stored[INPUT]["amount_nano"] == 23_105_000_000
    assert stored["Haiku output"]["amount_nano"] == 1_255_000_000
    assert stored["Batch"]["amount_nano"] == 1_000
    assert (stored["EU usage"]["currency"], stored["EU usage"]["amount_nano"]) == (
        "EUR",
        9_900_000_000,
    )
    assert cost_rows(sqlite_engine, TODAY - timedelta(days=2)) == {}
    hourly = {r["bucket_start"]: r for r in rows(sqlite_engine, BilledUsage)}
    assert hourly[midnight(day)]["cache_write_tokens"] == 5


def test_workspace_filters(sqlite_engine: Engine, server: BillingServer) -> None:
    outcome = run(sqlite_engine, server, workspace_ids=["wrkspc_01support"])
    assert outcome.ok
    assert {r["project"] for r in rows(sqlite_engine, BilledCost)} == {"wrkspc_01support"}
    usage_request = next(r for r in server.seen if "usage_report" in r.url.path)
    assert usage_request.url.params.get_list("workspace_ids[]") == ["wrkspc_01support"]
