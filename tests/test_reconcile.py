"""Reconciliation on a small hand-made month: traced calls and bill lines inserted directly,
every figure checked to the nano-dollar.

2025-11-03 (UTC)
  openai     gpt-4o-mini   calls 0.600 + 0.400 (model gpt-4o-mini, one answered by the snapshot
                           gpt-4o-mini-2024-07-18) + 0.500 (requested as the snapshot) = 1.500
                           billed: "gpt-4o-mini-2024-07-18, input" 1.200 + "…, output" 0.450
             mystery-x     one unpriced call; no bill line
             gpt-4.1       no call; billed 0.300 (untraced traffic)
             web search    billed 0.250, no model
  anthropic  claude-sonnet-4-5   call 2.000 (as claude-sonnet-4-5-20250929); billed 2.100
             claude-haiku-4-5    call 0.100; billed 3.000 EUR only
2025-11-04
  openai     gpt-4o-mini   call 0.200, and one at 00:00:05 of a request that started on the 3rd
                           (0.050: the call's day counts); no openai bill that day
A vllm call (a provider never billed) is left out of the reconciliation.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from app.cli import app
from app.reports.reconcile import COLUMNS, ReconRow, reconcile, reconcile_records
from app.rollups.dirty import mark_traces
from app.warehouse.engine import session_scope
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_billing import BilledCost

NANO = 10**9
D3, D4 = date(2025, 11, 3), date(2025, 11, 4)


def usd(text: str) -> int:
    return int(Decimal(text) * NANO)


def at(day: date, hour: int = 12, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC) + timedelta(seconds=second)


def add_call(
    engine: Engine,
    trace: str,
    span: str,
    when: datetime,
    provider: str,
    model: str,
    cost: int | None,
    *,
    response_model: str | None = None,
    request_at: datetime | None = None,
    endpoint: str = "/chat",
    user: str | None = None,
) -> None:
    """One LLM call, and its request if the trace has none yet."""
    with session_scope(engine) as session:
        if session.get(Request, trace) is None:
            session.add(
                Request(
                    trace_id=trace,
                    started_at=request_at or when,
                    root_key="k",
                    endpoint=endpoint,
                    user_id=user,
                    updated_at=when,
                )
            )
        session.add(
            LlmCall(
                trace_id=trace,
                span_id=span,
                started_at=when,
                duration_ms=10,
                provider=provider,
                model=model,
                response_model=response_model,
                family="otel-genai",
                input_tokens=100,
                output_tokens=10,
                cost_nanousd=cost,
                price_source="catalog" if cost is not None else "none",
                ingested_at=when,
            )
        )
        session.flush()  # written by hand, not by load_batch: its day's rollups are stale
        mark_traces(session.connection(), [trace])


def add_line(
    engine: Engine,
    provider: str,
    day: date,
    line_item: str,
    amount: int,
    model: str | None = None,
    cost_type: str | None = "tokens",
    currency: str = "USD",
) -> None:
    with session_scope(engine) as session:
        session.add(
            BilledCost(
                provider=provider,
                day=day,
                line_item=line_item,
                model=model,
                model_raw=model,
                cost_type=cost_type,
                amount_nano=amount,
                currency=currency,
                fetched_at=datetime.now(UTC),
            )
        )


@pytest.fixture
def month(engine: Engine) -> Engine:
    return load_month(engine)


def load_month(engine: Engine) -> Engine:
    """The calls and bill lines of the table above."""
    add_call(engine, "t1", "s1", at(D3), "openai", "gpt-4o-mini", usd("0.6"))
    add_call(
        engine,
        "t1",
        "s2",
        at(D3, 13),
        "openai",
        "gpt-4o-mini",
        usd("0.4"),
        response_model="gpt-4o-mini-2024-07-18",
    )
    add_call(engine, "t2", "s1", at(D3, 14), "openai", "gpt-4o-mini-2024-07-18", usd("0.5"))
    add_call(engine, "t3", "s1", at(D3, 15), "openai", "mystery-x", None)
    add_call(engine, "t4", "s1", at(D3), "anthropic", "claude-sonnet-4-5-20250929", usd("2"))
    add_call(engine, "t5", "s1", at(D3), "anthropic", "claude-haiku-4-5", usd("0.1"))
    add_call(engine, "t6", "s1", at(D4), "openai", "gpt-4o-mini", usd("0.2"))
    add_call(engine, "t8", "s1", at(D3), "vllm", "llama-3.1-70b", None)  # never billed: left out
    add_call(
        engine,
        "t7",
        "s1",
        at(D4, 0, 5),
        "openai",
        "gpt-4o-mini",
        usd("0.05"),
        request_at=at(D3, 23, 3590),
    )
    add_line(engine, "openai", D3, "gpt-4o-mini-2024-07-18, input", usd("1.2"), "gpt-4o-mini")
    add_line(  # a bill that kept the snapshot name: normalized here too
        engine,
        "openai",
        D3,
        "gpt-4o-mini-2024-07-18, output",
        usd("0.45"),
        "gpt-4o-mini-2024-07-18",
    )
    add_line(engine, "openai", D3, "gpt-4.1-2025-04-14, input", usd("0.3"), "gpt-4.1")
    add_line(engine, "openai", D3, "web search tool calls", usd("0.25"), None, "web_search")
    add_line(
        engine,
        "anthropic",
        D3,
        "Claude Sonnet 4.5 Usage - Input Tokens",
        usd("2.1"),
        "claude-sonnet-4-5",
    )
    add_line(
        engine,
        "anthropic",
        D3,
        "Haiku 4.5 - Input",
        usd("3"),
        "claude-haiku-4-5",
        currency="EUR",
    )
    return engine


def table(text: str) -> list[dict[str, str | None]]:
    """Rows written as `|`-separated lines in COLUMNS order; an empty cell is null."""
    rows = [line.split("|") for line in text.strip().splitlines()]
    return [{c: v.strip() or None for c, v in zip(COLUMNS, r, strict=True)} for r in rows]


EXPECTED = table(
    """
2025-11-03|anthropic|claude-haiku-4-5||0.100000000|||
2025-11-03|anthropic|claude-sonnet-4-5||2.000000000|2.100000000|0.100000000|1.050000
2025-11-03|anthropic|claude-haiku-4-5|Haiku 4.5 - Input [not USD: 3.000000000 EUR]||||
2025-11-03|openai|gpt-4o-mini||1.500000000|1.650000000|0.150000000|1.100000
2025-11-03|openai|mystery-x||0.000000000|0.000000000|0.000000000|
2025-11-03|openai|gpt-4.1|gpt-4.1-2025-04-14, input|0.000000000|0.300000000|0.300000000|
2025-11-03|openai||web search tool calls|0.000000000|0.250000000|0.250000000|
2025-11-04|openai|gpt-4o-mini||0.250000000|||
"""
)


def test_the_month_reconciles_to_the_nano(month: Engine) -> None:
    result = reconcile(month, D3)
    records = reconcile_records(result.rows)
    for record in records:
        assert list(record) == list(COLUMNS)
    assert records == EXPECTED
    assert result.unpriced_calls == 1
    assert len(result.not_usd) == 1


def test_the_differences_add_up_to_the_whole_gap(month: Engine) -> None:
    result = reconcile(month, D3, D4)
    differences = sum(r.difference_nanousd or 0 for r in result.rows)
    assert differences == result.billed_nanousd - result.estimated_nanousd == usd("0.8")
    # USD billed: everything but the EUR line; never the EUR amount.
    assert result.billed_nanousd == usd("1.65") + usd("0.3") + usd("0.25") + usd("2.1")
    assert result.estimated_nanousd == usd("3.5")
    assert result.unbilled_nanousd == usd("0.1")  # haiku: billed in EUR only


def test_until_is_exclusive_and_the_calls_day_counts(month: Engine) -> None:
    third = reconcile(month, D3, D4)
    assert {r.day for r in third.rows} == {D3}
    mini = [r for r in third.rows if r.model == "gpt-4o-mini" and r.line_item is None]
    assert [r.estimated_nanousd for r in mini] == [usd("1.5")]  # not the 00:00:05 call
    fourth = reconcile(month, D4, date(2025, 11, 5))
    assert [(r.model, r.estimated_nanousd) for r in fourth.rows] == [("gpt-4o-mini", usd("0.25"))]


def test_a_provider_day_with_a_bill_but_no_line_for_the_model_is_billed_zero(
    month: Engine,
) -> None:
    add_line(month, "openai", D4, "gpt-4.1-2025-04-14, input", usd("0.01"), "gpt-4.1")
    rows = reconcile(month, D4, date(2025, 11, 5)).rows
    mini = next(r for r in rows if r.model == "gpt-4o-mini")
    assert (mini.billed_nanousd, mini.difference_nanousd) == (0, -usd("0.25"))
    assert mini.ratio == Decimal(0)


def test_ratio_is_null_when_nothing_was_estimated() -> None:
    assert ReconRow(D3, "openai", "m", None, 0, 5).ratio is None
    assert ReconRow(D3, "openai", "m", None, 3, 1).ratio == Decimal("0.333333")


def cli(url: str, tmp_path: Path, *args: str, true_up: bool = False) -> Result:
    config = tmp_path / "spendguard.yaml"
    config.write_text(
        json.dumps({"database": {"url": url}, "pricing": {"true_up": true_up}}), encoding="utf-8"
    )
    return CliRunner().invoke(app, ["--config", str(config), *args])


def test_cli_json_csv_and_table(month: Engine, warehouse_url: str, tmp_path: Path) -> None:
    args = ["report", "reconcile", "--since", "2025-11-03", "--until", "2025-11-05"]
    result = cli(warehouse_url, tmp_path, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [list(r) for r in rows] == [list(COLUMNS)] * len(EXPECTED)
    assert rows == EXPECTED
    assert "not in USD" in result.stderr and "1 unpriced call" in result.stderr

    csv = cli(warehouse_url, tmp_path, *args, "--format", "csv")
    assert csv.exit_code == 0
    assert csv.stdout.splitlines()[0] == ",".join(COLUMNS)
    assert len(csv.stdout.splitlines()) == 1 + len(EXPECTED)

    table = cli(warehouse_url, tmp_path, *args)
    assert table.exit_code == 0
    assert "claude-sonnet-4-5" in table.stdout and "web search tool calls" in table.stdout
    assert "estimated $3.500000000, billed $4.300000000, difference $0.800000000" in table.stdout
    assert "estimated with no USD bill (yet): $0.350000000" in table.stdout


def test_cli_says_that_todays_bill_is_partial(engine: Engine, tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    for day in (yesterday, today):
        add_call(engine, f"t-{day}", "s1", at(day, 0, 60), "openai", "gpt-4o-mini", usd("1"))
        add_line(engine, "openai", day, "input", usd("0.5"), "gpt-4o-mini")
    url = engine.url.render_as_string(hide_password=False)
    table = cli(url, tmp_path, "report", "reconcile", "--since", str(yesterday))
    assert table.exit_code == 0, table.output
    assert f"note: {today} not over yet: its bill is partial" in table.stdout
    assert str(yesterday) not in table.stdout.split("note:")[1]
    past = cli(
        url, tmp_path, "report", "reconcile", "--since", str(yesterday), "--until", str(today)
    )
    assert past.exit_code == 0 and "not over yet" not in past.stdout


def test_cli_refuses_a_bad_format_and_a_bad_day(warehouse_url: str, tmp_path: Path) -> None:
    bad = cli(
        warehouse_url, tmp_path, "report", "reconcile", "--since", "2025-11-03", "--format", "x"
    )
    assert bad.exit_code != 0
    day = cli(warehouse_url, tmp_path, "report", "reconcile", "--since", "11/03/2025")
    assert day.exit_code != 0 and "YYYY-MM-DD" in day.output
