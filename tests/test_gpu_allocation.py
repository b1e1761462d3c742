"""GPU allocation on a hand-made day, exact to the nano-dollar: two pools, three pooled models,
idle hours, a credit, a capacity, and a second source for the same spend that must not count.

2025-11-20, pool `llama-70b` (tag gpu-pool=llama-70b; llama-3.1-70b and llama-3.1-8b; by
GPU-seconds) and pool `embed` (OpenCost namespace inference-embed; bge-large; by tokens,
capacity 10,000 tokens an hour):

    llama-70b  FOCUS p5 $98.17 at 03h, 10h, 11h; a credit of -$1.00 over 10h–12h (-$0.50 an hour)
               Cost Explorer $2,000 for the day: the same spend seen twice, FOCUS wins
      10h  A llama-3.1-70b 3000 ms (/chat u-1), B llama-3.1-70b 1000 ms (/search u-2),
           C llama-3.1-8b 2000 ms (/chat u-2)        → $97.67 shared 3:1:2
      11h  D llama-3.1-8b 1 ms (/search u-1)        → $97.67 to D
      03h  no call                                  → $98.17 idle
    embed      OpenCost $3.00 at 10h, 11h, 12h
      10h  E 2000 tokens, F 3000 tokens: 5000 of 10000 → $1.50 to E and F 2:3, $1.50 idle
      11h  G 12000 tokens (over capacity)           → $3.00 to G
      12h  no call                                  → $3.00 idle
    (unassigned)  FOCUS g6e $10.4328 at 10h tagged gpu-pool=embeddings (no pool matches)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, delete, func, select, update

from app.gpu.allocate import SETTLE, refresh, refresh_stale
from app.gpu.report import allocation_rows, pool_rows
from app.rollups.dirty import mark_traces
from app.rollups.refresh import refresh as rollup_refresh
from app.settings import Settings
from app.warehouse.engine import session_scope
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_gpu import GpuAllocation, GpuCost, GpuPoolHour
from app.warehouse.tables_rollup import rollup_dirty
from app.warehouse.types import as_date

DAY = date(2025, 11, 20)
NEXT = DAY + timedelta(days=1)
POOLS = [
    {
        "name": "llama-70b",
        "match": {"tag": {"gpu-pool": "llama-70b"}},
        "models": ["llama-3.1-70b", "llama-3.1-8b"],
    },
    {
        "name": "embed",
        "match": {"namespace": "inference-embed"},
        "models": ["bge-large"],
        "allocate_by": "tokens",
        "capacity_per_hour": 10_000,
    },
]
SETTINGS = Settings(gpu_pools=POOLS)  # type: ignore[arg-type]


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 11, 20, hour, minute, tzinfo=UTC)


def usd(text: str) -> int:
    return int(Decimal(text) * 10**9)


def add_call(
    engine: Engine,
    trace: str,
    when: datetime,
    model: str,
    *,
    ms: int = 0,
    tokens: int = 0,
    endpoint: str = "/chat",
    user: str = "u-1",
    ingested_at: datetime | None = None,
) -> None:
    with session_scope(engine) as session:
        session.add(
            Request(
                trace_id=trace,
                started_at=when,
                root_key="k",
                endpoint=endpoint,
                user_id=user,
                updated_at=when,
            )
        )
        session.add(
            LlmCall(
                trace_id=trace,
                span_id="s1",
                started_at=when,
                duration_ms=ms,
                provider="vllm",
                model=model,
                family="otel-genai",
                input_tokens=tokens,
                output_tokens=0,
                cost_nanousd=0,
                price_source="override",
                ingested_at=ingested_at or datetime.now(UTC),
            )
        )
        session.flush()  # written by hand, not by load_batch: its day's rollups are stale
        mark_traces(session.connection(), [trace])


def add_cost(
    engine: Engine,
    source: str,
    start: datetime,
    end: datetime,
    amount: str,
    *,
    tags: str | None = None,
    namespace: str | None = None,
    category: str = "usage",
) -> None:
    with session_scope(engine) as session:
        session.add(
            GpuCost(
                source=source,
                source_key="test",
                slice_key=start.date().isoformat(),
                period_start=start,
                period_end=end,
                charge_category=category,
                tags=tags,
                namespace=namespace,
                amount_nano=usd(amount),
                currency="USD",
                fetched_at=datetime.now(UTC),
            )
        )


LLAMA = '{"gpu-pool":"llama-70b"}'


def hand_made_day(engine: Engine) -> None:
    for hour in (3, 10, 11):
        add_cost(engine, "focus", at(hour), at(hour) + timedelta(hours=1), "98.17", tags=LLAMA)
    add_cost(engine, "focus", at(10), at(12), "-1.00", tags=LLAMA, category="credit")
    add_cost(engine, "aws_ce", at(0), at(0) + timedelta(days=1), "2000", tags=LLAMA)
    for hour in (10, 11, 12):
        add_cost(engine, "opencost", at(hour), at(hour + 1), "3.00", namespace="inference-embed")
    add_cost(engine, "focus", at(10), at(11), "10.4328", tags='{"gpu-pool":"embeddings"}')
    add_call(engine, "a" * 32, at(10, 5), "llama-3.1-70b", ms=3000, endpoint="/chat", user="u-1")
    add_call(engine, "b" * 32, at(10, 6), "llama-3.1-70b", ms=1000, endpoint="/search", user="u-2")
    add_call(engine, "c" * 32, at(10, 7), "llama-3.1-8b", ms=2000, endpoint="/chat", user="u-2")
    add_call(engine, "d" * 32, at(11, 30), "llama-3.1-8b", ms=1, endpoint="/search", user="u-1")
    add_call(engine, "e" * 32, at(10, 1), "bge-large", tokens=2000, endpoint="/embed", user="u-3")
    add_call(engine, "f" * 32, at(10, 2), "bge-large", tokens=3000, endpoint="/embed", user="u-3")
    add_call(engine, "0" * 32, at(11, 2), "bge-large", tokens=12000, endpoint="/embed", user="u-1")
    add_call(engine, "9" * 32, at(10, 9), "gpt-4o-mini", ms=5000)  # not pooled: no GPU cost


def shares(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t[0]: c
            for t, c in conn.execute(select(GpuAllocation.trace_id, GpuAllocation.gpu_cost_nanousd))
        }


def test_the_hand_made_day_to_the_nano_dollar(engine: Engine) -> None:
    hand_made_day(engine)
    result = refresh(engine, SETTINGS, DAY, NEXT)
    assert shares(engine) == {
        "a": 48_835_000_000,  # 97.67 × 3/6
        "b": 16_278_333_333,  # 97.67 × 1/6, floored
        "c": 32_556_666_667,  # 97.67 × 2/6, + the one nano-dollar left (largest remainder)
        "d": 97_670_000_000,
        "e": 600_000_000,  # 1.50 × 2/5
        "f": 900_000_000,
        "0": 3_000_000_000,
    }
    rows = {r.pool: r for r in pool_rows(engine, DAY, NEXT)}
    assert list(rows) == ["llama-70b", "embed", "(unassigned)"]
    llama, embed, unassigned = rows["llama-70b"], rows["embed"], rows["(unassigned)"]
    assert (llama.cost_nanousd, llama.allocated_nanousd, llama.idle_nanousd) == (
        usd("293.51"),
        usd("195.34"),
        usd("98.17"),
    )
    assert (llama.credits_nanousd, llama.sources, llama.hours, llama.busy_hours) == (
        usd("-1.00"),
        "focus",
        3,
        2,
    )
    assert (embed.cost_nanousd, embed.allocated_nanousd, embed.idle_nanousd) == (
        usd("9"),
        usd("4.5"),
        usd("4.5"),
    )
    assert embed.utilisation == Decimal("0.5000")  # (5000 + 10000 (full) + 0) / 30000
    assert (unassigned.cost_nanousd, unassigned.allocated_nanousd) == (usd("10.4328"), 0)
    assert result.cost_nanousd == usd("293.51") + usd("9") + usd("10.4328")
    with engine.connect() as conn:
        for cost, allocated, idle, pool, hour in conn.execute(
            select(
                GpuPoolHour.cost_nanousd,
                GpuPoolHour.allocated_nanousd,
                GpuPoolHour.idle_nanousd,
                GpuPoolHour.pool,
                GpuPoolHour.hour,
            )
        ):
            if pool == "(unassigned)":
                assert allocated == idle == 0
                continue
            assert allocated + idle == cost, (pool, hour)
            total = conn.execute(
                select(func.coalesce(func.sum(GpuAllocation.gpu_cost_nanousd), 0)).where(
                    GpuAllocation.pool == pool, GpuAllocation.hour == hour
                )
            ).scalar_one()
            assert total == allocated, (pool, hour)

    by_endpoint = {
        r.group["endpoint"]: r.gpu_cost_usd
        for r in allocation_rows(engine, ["endpoint"], DAY, NEXT)
    }
    assert by_endpoint == {
        "/chat": Decimal("81.391666667"),
        "/search": Decimal("113.948333333"),
        "/embed": Decimal("4.500000000"),
    }
    by_user = {
        r.group["user"]: r.gpu_cost_usd for r in allocation_rows(engine, ["user"], DAY, NEXT)
    }
    assert sum(by_user.values()) == Decimal("199.84")  # every allocated nano-dollar, once


def test_refreshing_again_changes_nothing_and_new_calls_or_bills_are_picked_up(
    engine: Engine,
) -> None:
    hand_made_day(engine)
    assert refresh_stale(engine, SETTINGS) is not None
    before = (shares(engine), [(r.pool, r.cost_nanousd, r.idle_nanousd) for r in pool_rows(engine)])
    refresh(engine, SETTINGS, DAY, NEXT)
    # Within SETTLE of the newest rows their days are allocated again (a late commit could
    # still come), with the same result; after it, nothing is left to do.
    assert refresh_stale(engine, SETTINGS) is not None
    later = datetime.now(UTC) + SETTLE
    assert refresh_stale(engine, SETTINGS, now=later) is not None
    assert refresh_stale(engine, SETTINGS, now=later) is None  # nothing new
    assert (
        shares(engine),
        [(r.pool, r.cost_nanousd, r.idle_nanousd) for r in pool_rows(engine)],
    ) == before

    # A call arrives in the idle night hour: that hour is allocated to it, nothing else moves.
    add_call(engine, "7" * 32, at(3, 15), "llama-3.1-70b", ms=10)
    assert refresh_stale(engine, SETTINGS) is not None
    assert shares(engine)["7"] == usd("98.17")
    llama = next(r for r in pool_rows(engine) if r.pool == "llama-70b")
    assert (llama.allocated_nanousd, llama.idle_nanousd) == (usd("293.51"), 0)

    # A changed pool config re-allocates everything (embed's capacity removed: nothing idle in
    # its busy hours any more).
    unbounded = Settings(gpu_pools=[POOLS[0], {**POOLS[1], "capacity_per_hour": None}])  # type: ignore[arg-type]
    refresh_stale(engine, unbounded)
    assert shares(engine)["e"] == usd("1.20") and shares(engine)["f"] == usd("1.80")


def test_a_reallocation_marks_only_the_requests_whose_shares_changed(engine: Engine) -> None:
    """The worker re-allocates a day after every collector run that brought a pooled call or a
    cost line: on the live day, stored as hour slices, the rollups are marked stale only where
    a call's share came, went or moved (the hours of its request), not the whole day, which
    would be rebuilt whole and read from the base tables meanwhile (a day stored whole is
    rebuilt with its new shares and written with them: tests/test_rollup_swap_gpu.py)."""
    hand_made_day(engine)
    # The day is stale whole (its spans were just written): its shares' hours are marked too.
    assert refresh(engine, SETTINGS, DAY, NEXT).rebuilt_days == []
    assert _marks(engine) >= {(DAY, 10), (DAY, 11)}  # the requests with a share
    rollup_refresh(engine)  # the day is live: stored as hour slices
    refresh(engine, SETTINGS, DAY, NEXT)  # the same calls and bills: the same shares
    assert _marks(engine) == set()
    # A call at 11:40, of a request that started at 9:50, where `d` had the llama pool's hour
    # alone: the new share marks its request's hour, and `d`'s, which moved, `d`'s.
    new = "7" * 32
    add_call(engine, new, at(11, 40), "llama-3.1-70b", ms=1, user="u-9")
    with session_scope(engine) as session:
        session.execute(update(Request).where(Request.trace_id == new).values(started_at=at(9, 50)))
    _clear_marks(engine)  # (`add_call` marks its own request, as the ingest would)
    refresh(engine, SETTINGS, DAY, NEXT)
    assert _marks(engine) == {(DAY, 9), (DAY, 11)}
    # The call goes: its share goes (9:00), and `d`'s moves back (11:00).
    rollup_refresh(engine)
    with session_scope(engine) as session:
        session.execute(delete(LlmCall).where(LlmCall.trace_id == new))
    refresh(engine, SETTINGS, DAY, NEXT)
    assert _marks(engine) == {(DAY, 9), (DAY, 11)}


def _marks(engine: Engine) -> set[tuple[date, int | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(rollup_dirty.c.day, rollup_dirty.c.hour).distinct())
        return {(as_date(day), hour) for day, hour in rows}


def _clear_marks(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(rollup_dirty))


def test_a_call_committed_after_a_refresh_with_an_older_stamp_is_allocated(
    engine: Engine,
) -> None:
    """A writer stamps its calls when it writes them and may commit seconds later (the ingest
    groups batches in one transaction): a refresh in between sees newer stamps from another
    writer. The late call must still be allocated."""
    hand_made_day(engine)
    written = datetime.now(UTC)
    add_call(engine, "8" * 32, at(2, 10), "llama-3.1-70b", ms=10, ingested_at=written)
    assert refresh_stale(engine, SETTINGS) is not None  # the newest stamp it sees: `written`
    # Committed now, with the stamp it got when it was written, before that refresh's newest.
    late = written - timedelta(seconds=1)
    add_call(engine, "7" * 32, at(3, 15), "llama-3.1-70b", ms=10, ingested_at=late)
    assert refresh_stale(engine, SETTINGS) is not None
    assert shares(engine)["7"] == usd("98.17")


def test_no_pool_configured_keeps_the_bill_unassigned(engine: Engine) -> None:
    hand_made_day(engine)
    refresh(engine, Settings(), DAY, NEXT)
    assert shares(engine) == {}
    [row] = pool_rows(engine)
    # Unassigned takes one source per day as well: FOCUS (first by default) over the others.
    assert row.pool == "(unassigned)" and row.sources == "focus"
    assert row.cost_nanousd == 3 * usd("98.17") + usd("-1.00") + usd("10.4328")


def test_unit_costs_add_the_gpu_share_to_the_token_cost(engine: Engine) -> None:
    from app.reports.render import render_unit_costs
    from app.reports.unit_costs import Scope, unit_costs

    hand_made_day(engine)
    refresh(engine, SETTINGS, DAY, NEXT)
    rows = {r.group["endpoint"]: r for r in unit_costs(engine, ["endpoint"], Scope(DAY, NEXT))}
    chat = rows["/chat"]
    assert chat.gpu_cost_usd == Decimal("81.391666667")  # A + C
    assert chat.token_cost_usd == Decimal(0)  # self-hosted: priced 0 per token
    assert chat.cost_usd == chat.gpu_cost_usd and chat.requests == 3
    assert chat.cost_per_1k_requests == Decimal("27130.555555667")  # 1000 × 81.391666667 / 3
    by_model = unit_costs(engine, ["model"], Scope(DAY, NEXT))
    assert sum(r.gpu_cost_nanousd for r in by_model) == usd("199.84")
    [total] = unit_costs(engine, [], Scope(DAY, NEXT))
    assert total.gpu_cost_nanousd == usd("199.84") and total.cost_nanousd == usd("199.84")
    import json

    [record] = json.loads(render_unit_costs([total], [], "json"))
    assert (record["token_cost_usd"], record["gpu_cost_usd"], record["cost_usd"]) == (
        "0.000000000",
        "199.840000000",
        "199.840000000",
    )


def test_the_worker_allocates_after_a_collector_run(sqlite_engine: Engine, tmp_path: Any) -> None:
    """A scheduled `focus` run (a local export folder) is followed by the allocation of the
    hours it billed, with no other command."""
    import polars as pl

    from app.worker import run_collector
    from tests.gpu_fakes import csv_gz, focus_frame

    folder = tmp_path / "exports" / "acme" / "data" / "BILLING_PERIOD=2025-11"
    folder.mkdir(parents=True)
    at_ten = focus_frame().with_columns(
        pl.col("ChargePeriodStart").str.replace("T00:", "T10:"),
        pl.col("ChargePeriodEnd").str.replace("T01:", "T11:"),
    )
    (folder / "acme-00001.csv.gz").write_bytes(csv_gz(at_ten))
    add_call(sqlite_engine, "a" * 32, at(10, 5), "llama-3.1-70b", ms=3000)
    settings = Settings(
        collectors={"focus": {"enabled": True, "path": str(tmp_path), "initial_months": 36}},  # type: ignore[arg-type]
        gpu_pools=POOLS,  # type: ignore[arg-type]
    )
    run_collector("focus", sqlite_engine, settings)
    assert shares(sqlite_engine) == {"a": 98_170_100_000}
