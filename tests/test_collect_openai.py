"""The `openai` collector against a local fake of the OpenAI Admin API at the wire
(tests/billing_server.py): pages, restatements, faults and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from app.warehouse.checkpoints import read_checkpoints
from app.warehouse.engine import session_scope
from app.warehouse.tables import CollectorRun
from app.warehouse.tables_billing import BilledCost, BilledUsage
from collectors.base import RunOutcome
from collectors.billing_common import midnight
from collectors.openai import OpenAICollector, parse_line_item
from tests.billing_server import (
    KEY,
    TODAY,
    BillingServer,
    FakeClock,
    Fault,
    days_before,
    openai_ledger,
    settings_for,
)
from tests.test_collect_command import cli


@pytest.fixture
def server() -> Iterator[BillingServer]:
    fake = BillingServer(openai_ledger(days_before(TODAY, 5)), page_size=2)
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
    collector = OpenAICollector(clock=clock, sleep=clock.sleep, timeout=timeout)
    options = {"initial_days": 4, **options}
    settings = settings_for("openai", server.base_url, **options)
    return collector.run(engine, settings, since=midnight(since) if since else None)


def costs(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = select(BilledCost.__table__).order_by(BilledCost.day, BilledCost.line_item)
        return [dict(r._mapping) for r in conn.execute(query)]


def usage(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = select(BilledUsage.__table__).order_by(BilledUsage.bucket_start)
        return [dict(r._mapping) for r in conn.execute(query)]


def checkpoint(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as session:
        return read_checkpoints(session, "openai")


def unix(day: date) -> str:
    return str(int(midnight(day).timestamp()))


def test_a_run_reads_every_page_and_stores_exact_rows(
    engine: Engine, server: BillingServer
) -> None:
    outcome = run(engine, server)
    assert outcome.ok, outcome.errors
    assert (outcome.rows_loaded, outcome.rows_rejected) == (15, 0)  # 5 days × (2 costs + 1 usage)
    assert outcome.details["api_calls"] == 6  # 3 pages of costs, 3 of usage
    assert checkpoint(engine) == {"organization": json.dumps({"through": TODAY.isoformat()})}

    first = costs(engine)[0]
    assert first["day"] == TODAY - timedelta(days=4)
    assert {k: first[k] for k in ("provider", "line_item", "model", "model_raw")} == {
        "provider": "openai",
        "line_item": "gpt-4o-mini-2024-07-18, input",
        "model": "gpt-4o-mini",
        "model_raw": "gpt-4o-mini-2024-07-18",
    }
    assert (first["cost_type"], first["token_type"], first["project"]) == (
        "tokens",
        "input",
        "proj_support",
    )
    assert (first["amount_nano"], first["currency"]) == (41_273_500_000, "USD")  # $41.2735
    bucket = usage(engine)[-1]
    assert bucket["bucket_start"] == midnight(TODAY) and bucket["bucket_width"] == "1d"
    assert (bucket["input_tokens"], bucket["cache_read_tokens"], bucket["output_tokens"]) == (
        18_250_000,
        6_100_000,
        1_420_000,
    )
    assert (bucket["requests"], bucket["model"], bucket["api_key_id"]) == (
        9120,
        "gpt-4o-mini",
        None,
    )

    asked = server.seen
    assert [r.url.path for r in asked] == ["/v1/organization/costs"] * 3 + [
        "/v1/organization/usage/completions"
    ] * 3
    params = asked[0].url.params
    assert (params["start_time"], params["end_time"]) == (
        unix(TODAY - timedelta(days=4)),
        unix(TODAY + timedelta(days=1)),
    )
    assert params.get_list("group_by") == ["project_id", "line_item"]
    assert (params["bucket_width"], params["limit"], params.get("page")) == ("1d", "5", None)
    assert asked[1].url.params["page"].startswith("page_")  # next_page followed
    assert asked[3].url.params.get_list("group_by") == ["model", "project_id", "api_key_id"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in asked)


def test_restated_days_are_replaced_never_appended(engine: Engine, server: BillingServer) -> None:
    clock = FakeClock()
    assert run(engine, server, clock).ok
    ids_before = {(r["day"], r["line_item"]): r["id"] for r in costs(engine)}
    ledger = server.ledger.costs
    restated, grown, too_old = (TODAY - timedelta(days=n) for n in (2, 1, 4))
    ledger[restated][0]["amount"]["value"] = Decimal("50.0001")
    ledger[grown].append({**ledger[grown][1], "line_item": "gpt-4o-mini-2024-07-18, cached input"})
    ledger[too_old][0]["amount"]["value"] = Decimal("1")  # beyond the 3 days re-read

    clock.now += timedelta(hours=1)
    again = run(engine, server, clock)
    assert again.ok and again.details["days_replaced"] == 2
    assert again.rows_loaded == 3 + 4  # the two changed days, costs and usage, written again
    assert again.window_start == midnight(TODAY - timedelta(days=3))  # checkpoint − lookback
    stored = costs(engine)
    assert len(stored) == 11 and len(usage(engine)) == 5
    by_key = {(r["day"], r["line_item"]): r for r in stored}
    assert by_key[(restated, "gpt-4o-mini-2024-07-18, input")]["amount_nano"] == 50_000_100_000
    assert by_key[(too_old, "gpt-4o-mini-2024-07-18, input")]["amount_nano"] == 41_273_500_000
    unchanged = TODAY - timedelta(days=3)
    for line in ("gpt-4o-mini-2024-07-18, input", "gpt-4o-mini-2024-07-18, output"):
        assert by_key[(unchanged, line)]["id"] == ids_before[(unchanged, line)]  # left alone

    quiet = run(engine, server, clock)
    assert quiet.ok and quiet.rows_loaded == 0 and quiet.details["days_replaced"] == 0
    assert len(costs(engine)) == 11

    backfill = run(engine, server, clock, since=too_old)  # --since reaches older restatements
    assert backfill.ok and backfill.details["days_replaced"] == 1
    assert by_key[(too_old, "gpt-4o-mini-2024-07-18, input")]["id"] not in {
        r["id"] for r in costs(engine)
    }


def test_a_500_on_page_3_of_5_stores_nothing_of_the_window(engine: Engine) -> None:
    server = BillingServer(openai_ledger(days_before(TODAY, 5)), page_size=1)
    try:
        clock = FakeClock()
        assert run(engine, server, clock).ok
        before = (costs(engine), usage(engine), checkpoint(engine))
        for day in server.ledger.costs.values():
            day[0]["amount"]["value"] = Decimal("99")  # restated, but never read to the end
        server.faults.append(Fault("costs", nth=3, status=500, times=None))
        clock.now += timedelta(days=1)
        failed = run(engine, server, clock, since=TODAY - timedelta(days=4))
    finally:
        server.close()
    assert not failed.ok
    error = failed.error or ""
    assert "openai GET /organization/costs: still failing after 5 attempts (500" in error
    assert "nothing of them stored" in error and "7 API calls in this run" in error
    assert (costs(engine), usage(engine), checkpoint(engine)) == before
    assert len(clock.slept) == 4  # four retries with backoff, on the fake clock
    with engine.connect() as conn:
        statuses = conn.execute(select(CollectorRun.status).order_by(CollectorRun.id)).scalars()
        assert list(statuses) == ["ok", "failed"]


def test_a_backfill_keeps_its_finished_windows_and_resumes(sqlite_engine: Engine) -> None:
    server = BillingServer(openai_ledger(days_before(TODAY, 21)), page_size=7)
    try:
        server.faults.append(Fault("costs", nth=3, status=503, times=None))
        failed = run(sqlite_engine, server, since=TODAY - timedelta(days=20))
        assert not failed.ok and failed.rows_loaded == 14 * 3  # two weeks stored
        through = (TODAY - timedelta(days=7)).isoformat()
        assert checkpoint(sqlite_engine) == {"organization": json.dumps({"through": through})}
        server.faults.clear()
        resumed = run(sqlite_engine, server)
    finally:
        server.close()
    assert resumed.ok and resumed.window_start == midnight(TODAY - timedelta(days=10))
    assert len(costs(sqlite_engine)) == 21 * 2 and len(usage(sqlite_engine)) == 21


def test_429_with_retry_after_and_a_timeout_are_retried(sqlite_engine: Engine) -> None:
    server = BillingServer(openai_ledger(days_before(TODAY, 5)), page_size=2)
    try:
        server.faults.append(Fault("usage", nth=2, status=429, headers={"Retry-After": "3"}))
        server.faults.append(Fault("costs", nth=1, stall=True))
        clock = FakeClock()
        # Long enough that only the stalled request times out, even on a busy machine.
        outcome = run(sqlite_engine, server, clock, timeout=2.0)
    finally:
        server.close()
    assert outcome.ok, outcome.errors
    assert outcome.details["api_calls"] == 8 and outcome.rows_loaded == 15
    assert clock.slept[1] == 3.0 and 0.5 <= clock.slept[0] <= 1.0  # backoff, then Retry-After


def test_a_refused_key_fails_at_once_naming_the_setting(
    sqlite_engine: Engine, server: BillingServer
) -> None:
    clock = FakeClock()
    collector = OpenAICollector(clock=clock, sleep=clock.sleep)
    settings = settings_for("openai", server.base_url, admin_key="sk-admin-wrong")
    failed = collector.run(sqlite_engine, settings)
    assert not failed.ok and len(server.seen) == 1 and clock.slept == []
    assert "401, the API refused the admin key" in (failed.error or "")
    assert "fix collectors.openai.admin_key" in (failed.error or "")
    assert costs(sqlite_engine) == [] and checkpoint(sqlite_engine) == {}

    unset = collector.run(sqlite_engine, settings_for("openai", server.base_url, admin_key=None))
    assert "no admin key: set collectors.openai.admin_key" in (unset.error or "")


def test_bad_input_is_counted_and_other_currencies_stay_apart(
    sqlite_engine: Engine, server: BillingServer
) -> None:
    day = TODAY - timedelta(days=1)
    good = server.ledger.costs[day][0]

    def amount(value: object, currency: str = "usd") -> dict[str, object]:
        return {"amount": {"value": value, "currency": currency}}

    server.ledger.costs[day] = [
        {**good, "quantity": 1_000_000, "quantity_unit": "tokens", "brand_new": {"x": 1}},
        {**good, "line_item": "o3-2025-04-16, output", **amount("12.50")},  # a string
        {**good, "line_item": "web search tool calls", **amount(3)},  # an integer
        {**good, "line_item": "gpt-4o, input", **amount(Decimal("7.5"), "eur")},
        {**good, "object": "organization.costs.credit"},  # a result type we do not know
        {**good, **amount("twelve")},  # not an amount
        {**good, **amount(Decimal("0.0"), "usd"), "line_item": None, "project_id": None},
    ]
    server.ledger.costs[TODAY - timedelta(days=2)] = []  # an empty day
    outcome = run(sqlite_engine, server)
    assert outcome.ok and outcome.rows_rejected == 2
    assert outcome.details["non_usd_cost_lines"] == 1
    stored = {r["line_item"]: r for r in costs(sqlite_engine) if r["day"] == day}
    assert stored["o3-2025-04-16, output"]["amount_nano"] == 12_500_000_000
    assert stored["o3-2025-04-16, output"]["model"] == "o3"
    assert stored["web search tool calls"]["amount_nano"] == 3_000_000_000
    assert (
        stored["web search tool calls"]["cost_type"],
        stored["web search tool calls"]["model"],
    ) == (
        "web_search",
        None,
    )
    assert (stored["gpt-4o, input"]["currency"], stored["gpt-4o, input"]["amount_nano"]) == (
        "EUR",
        7_500_000_000,
    )
    assert not any(r["day"] == TODAY - timedelta(days=2) for r in costs(sqlite_engine))
    with sqlite_engine.connect() as conn:
        usd = conn.execute(
            select(func.sum(BilledCost.amount_nano)).where(
                BilledCost.day == day, BilledCost.currency == "USD"
            )
        ).scalar_one()
    assert usd == 41_273_500_000 + 12_500_000_000 + 3_000_000_000


def test_hourly_usage_buckets_and_project_filters(sqlite_engine: Engine) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        q = request.url.params
        hours = range(int(q["start_time"]), int(q["end_time"]), 3600)
        data = [
            {"object": "bucket", "start_time": h, "end_time": h + 3600, "results": []}
            for h in hours
        ]
        if request.url.path.endswith("completions"):
            result = {"input_tokens": 10, "output_tokens": 2, "model": "gpt-4.1"}
            data[5]["results"] = [{"object": "organization.usage.completions.result", **result}]
        return httpx.Response(200, json={"object": "page", "data": data, "has_more": False})

    clock = FakeClock()
    collector = OpenAICollector(transport=httpx.MockTransport(handle), clock=clock)
    settings = settings_for(
        "openai",
        "https://api.openai.com/v1",
        usage_bucket_width="1h",
        project_ids=["proj_a", "proj_b"],
        lookback_days=0,
        initial_days=0,
    )
    outcome = collector.run(sqlite_engine, settings)
    assert outcome.ok and outcome.rows_loaded == 1
    usage_params = seen[1].url.params
    assert (usage_params["bucket_width"], usage_params["limit"]) == ("1h", "24")
    assert all(r.url.params.get_list("project_ids") == ["proj_a", "proj_b"] for r in seen)
    (row,) = usage(sqlite_engine)
    assert row["bucket_start"] == datetime(2025, 11, 21, 5, tzinfo=UTC)
    assert row["bucket_width"] == "1h" and row["requests"] is None


@pytest.mark.parametrize(
    ("line_item", "parsed"),
    [
        ("gpt-4o-mini-2024-07-18, input", ("gpt-4o-mini-2024-07-18", "tokens", "input")),
        ("gpt-4o-2024-08-06, cached input", ("gpt-4o-2024-08-06", "tokens", "cached input")),
        (
            "ft:gpt-4o-mini:acme::x1, training",
            ("ft:gpt-4o-mini:acme::x1", "fine_tuning", "training"),
        ),
        ("web search tool calls", (None, "web_search", None)),
        ("File search tool calls", (None, "file_search", None)),
        ("vector store storage", (None, "storage", None)),
        ("something new", (None, "other", None)),
        (None, (None, None, None)),
    ],
)
def test_line_items_name_their_model_and_kind(
    line_item: str | None, parsed: tuple[str | None, ...]
) -> None:
    assert parse_line_item(line_item)[1:] == parsed


def test_collect_command_backfills_since_a_day(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(UTC).date()  # the command runs on the real clock
    server = BillingServer(openai_ledger(days_before(today, 10)), page_size=7)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", KEY)
    config = (
        "collectors:\n  openai: {enabled: true, admin_key: '${OPENAI_ADMIN_KEY}', "
        f"base_url: '{server.base_url}'}}\n"
    )
    since = (today - timedelta(days=9)).isoformat()
    try:
        done = cli(tmp_path, str(sqlite_engine.url), config, "collect", "openai", "--since", since)
    finally:
        server.close()
    assert done.exit_code == 0, done.output
    assert "openai: ok, 1 source(s), 30 rows (4 api calls, 0 days replaced)" in done.output
    assert f"data from {since}T00:00:00Z" in done.output
