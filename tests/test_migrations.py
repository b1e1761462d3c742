"""The Alembic migrations build exactly the schema `app.warehouse.tables` declares, on both
backends, and go down and up again (on SQLite). These tests run the migrations themselves rather
than take the conftest's copies of a migrated warehouse (tests/test_warehouses.py checks those)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Float, Integer, Numeric, inspect
from sqlalchemy.types import TypeDecorator, TypeEngine

from app.warehouse.engine import make_engine
from app.warehouse.migrate import alembic_config, upgrade
from app.warehouse.tables import Base


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    eng = make_engine(migrated_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def snapshot(engine: Engine) -> dict[str, Any]:
    """Tables, columns (name, type, nullability) and indexes, to compare before and after."""
    inspector = inspect(engine)
    return {
        table: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)
            ),
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
        }
        for table in sorted(inspector.get_table_names())
    }


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert current_revision(engine) == head_revision(engine)
    assert schema_diff(engine) == []


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    before = snapshot(engine)
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    assert snapshot(engine) == before
    assert schema_diff(engine) == []


def test_downgrade_to_base_and_upgrade_again(sqlite_engine: Engine) -> None:
    tables = set(Base.metadata.tables)
    assert tables <= set(inspect(sqlite_engine).get_table_names())

    command.downgrade(alembic_config(sqlite_engine), "base")
    assert current_revision(sqlite_engine) is None
    assert not tables & set(inspect(sqlite_engine).get_table_names())

    upgrade(sqlite_engine)
    assert current_revision(sqlite_engine) == head_revision(sqlite_engine)
    assert schema_diff(sqlite_engine) == []


def _underlying(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    return type_.impl_instance if isinstance(type_, TypeDecorator) else type_


def _is_float(type_: TypeEngine[Any]) -> bool:
    # Float covers REAL, DOUBLE and DOUBLE_PRECISION; Numeric(asdecimal=False) is a float too.
    return isinstance(type_, Float) or (isinstance(type_, Numeric) and not type_.asdecimal)


def test_no_float_column_anywhere() -> None:
    floats = [
        f"{table.name}.{column.name}: {column.type!r}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if _is_float(_underlying(column.type))
    ]
    assert not floats, f"money and counts must be exact, found float columns: {floats}"


def test_money_columns_are_integers() -> None:
    money = [
        column
        for table in Base.metadata.tables.values()
        for column in table.columns
        if "usd" in column.name
    ]
    assert money, "no money column found: update this test's naming rule"
    for column in money:
        assert column.name.endswith("_nanousd"), f"{column}: money is stored as nano-dollars"
        assert isinstance(_underlying(column.type), Integer), f"{column}: {column.type!r}"


def test_no_float_column_in_the_migrated_database(engine: Engine) -> None:
    inspector = inspect(engine)
    floats = [
        f"{table}.{column['name']}: {column['type']!r}"
        for table in inspector.get_table_names()
        for column in inspector.get_columns(table)
        if _is_float(column["type"])
    ]
    assert not floats, floats


def test_0009_marks_the_days_of_an_existing_warehouse_for_the_rollups(engine: Engine) -> None:
    """Upgrading a warehouse that already holds requests: their days are marked dirty, and the
    first refresh builds their rollups (until then, reports read those days from the base
    tables)."""
    from datetime import UTC, date, datetime

    from sqlalchemy import select

    from app.reports.unit_costs import Scope, cost_query
    from app.rollups.refresh import dirty_days, refresh
    from app.warehouse.engine import session_scope
    from app.warehouse.tables import Request
    from app.warehouse.tables_rollup import rollup_daily

    command.downgrade(alembic_config(engine), "0008")
    assert "rollup_dirty" not in inspect(engine).get_table_names()
    with session_scope(engine) as session:
        for trace, day in (("a", 20), ("b", 20), ("c", 21)):
            when = datetime(2025, 11, day, 12, tzinfo=UTC)
            session.add(Request(trace_id=trace, started_at=when, root_key="0", updated_at=when))
    upgrade(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == [date(2025, 11, 20), date(2025, 11, 21)]
        query = cost_query(conn, [], Scope())
        assert "UNION ALL" in str(query)
        assert conn.execute(query).mappings().one()["requests"] == 3
    assert refresh(engine).days == 2
    with engine.connect() as conn:
        counts = conn.execute(select(rollup_daily.c.day, rollup_daily.c.requests)).all()
        assert sorted(counts) == [(date(2025, 11, 20), 2), (date(2025, 11, 21), 1)]
        query = cost_query(conn, [], Scope())
        assert "rollup_daily" in str(query) and "UNION" not in str(query)
        assert conn.execute(query).mappings().one()["requests"] == 3


def test_0011_marks_the_days_of_an_existing_warehouse_for_the_user_call_sets(
    engine: Engine,
) -> None:
    """Upgrading a warehouse whose rollups were built without the call-set tables of 0011: every
    day with requests is marked, so the first refresh fills them too."""
    from datetime import UTC, date, datetime

    from sqlalchemy import func, select

    from app.rollups.refresh import dirty_days, refresh
    from app.warehouse.engine import session_scope
    from app.warehouse.tables import LlmCall, Request
    from app.warehouse.tables_rollup import rollup_daily_set_calls, rollup_daily_user_set_calls

    command.downgrade(alembic_config(engine), "0010")
    assert "rollup_daily_user_set_calls" not in inspect(engine).get_table_names()
    when = datetime(2025, 11, 20, 12, tzinfo=UTC)
    with session_scope(engine) as session:
        session.add(Request(trace_id="a", started_at=when, root_key="0", updated_at=when))
        session.add(
            LlmCall(trace_id="a", span_id="1", started_at=when, provider="p", model="m",
                    family="otel-genai", price_source="catalog", ingested_at=when)
        )  # fmt: skip
    upgrade(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == [date(2025, 11, 20)]
    assert refresh(engine).days == 1
    with engine.connect() as conn:
        for table in (rollup_daily_set_calls, rollup_daily_user_set_calls):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 1


def test_0013_marks_the_request_days_of_gpu_shares_for_the_gpu_rollups(engine: Engine) -> None:
    """Upgrading a warehouse whose rollups were built before the GPU rollups of 0013: the
    request days that have GPU shares are marked (the others have nothing to roll up), so the
    first refresh fills the GPU tables."""
    from datetime import UTC, date, datetime, timedelta

    from sqlalchemy import select

    from app.rollups.refresh import dirty_days, refresh
    from app.warehouse.engine import session_scope
    from app.warehouse.tables import LlmCall, Request
    from app.warehouse.tables_gpu import GpuAllocation
    from app.warehouse.tables_rollup import (
        rollup_daily_gpu,
        rollup_daily_gpu_user_totals,
        rollup_daily_gpu_users,
    )

    command.downgrade(alembic_config(engine), "0012")
    assert "rollup_daily_gpu" not in inspect(engine).get_table_names()
    when = datetime(2025, 11, 20, 23, tzinfo=UTC)
    with session_scope(engine) as session:
        for trace, at in (("a", when), ("b", when - timedelta(days=2))):
            session.add(Request(trace_id=trace, started_at=at, root_key="0", updated_at=at))
            session.add(
                LlmCall(trace_id=trace, span_id="1", started_at=at, provider="p", model="m",
                        family="otel-genai", price_source="catalog", ingested_at=at)
            )  # fmt: skip
        session.add(
            GpuAllocation(trace_id="a", span_id="1", pool="gpu", hour=when + timedelta(hours=1),
                          weight=1, gpu_cost_nanousd=7, computed_at=when)
        )  # fmt: skip
    upgrade(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == [date(2025, 11, 20)]
    assert refresh(engine).days == 1
    with engine.connect() as conn:
        for table in (rollup_daily_gpu, rollup_daily_gpu_users, rollup_daily_gpu_user_totals):
            row = conn.execute(select(table.c.call_day, table.c.gpu_cost_nanousd)).one()
            assert (str(row.call_day), row.gpu_cost_nanousd) == ("2025-11-21", 7)


def test_0014_fills_the_call_day_rollup_of_an_existing_warehouse(engine: Engine) -> None:
    """Upgrading a warehouse that already holds calls: `rollup_call_days` is filled from them at
    once, by each call's own UTC day (not its request's), and no day is marked for it."""
    from datetime import UTC, date, datetime, timedelta

    from sqlalchemy import select

    from app.rollups.refresh import dirty_days
    from app.warehouse.engine import session_scope
    from app.warehouse.tables import LlmCall, Request
    from app.warehouse.tables_rollup import rollup_call_days

    command.downgrade(alembic_config(engine), "0013")
    assert "rollup_call_days" not in inspect(engine).get_table_names()
    evening = datetime(2025, 11, 20, 23, 59, tzinfo=UTC)
    calls = [  # span, minutes after the request, response model, cost
        ("1", 0, None, 700),
        ("2", 3, None, 300),  # the next UTC day
        ("3", 4, "m1-2025", None),  # unpriced, answered by a snapshot
    ]
    with session_scope(engine) as session:
        session.add(Request(trace_id="a", started_at=evening, root_key="0", updated_at=evening))
        for span, minutes, answered, cost in calls:
            session.add(
                LlmCall(
                    trace_id="a",
                    span_id=span,
                    started_at=evening + timedelta(minutes=minutes),
                    provider="p1",
                    model="m1",
                    response_model=answered,
                    family="otel-genai",
                    input_tokens=100,
                    output_tokens=10,
                    cost_nanousd=cost,
                    price_source="catalog",
                    ingested_at=evening,
                )
            )
    upgrade(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == []
        rows = conn.execute(select(rollup_call_days)).all()
    assert sorted(tuple(r) for r in rows) == [  # whole days (hour -1, after 0015)
        (date(2025, 11, 20), "p1", "m1", 1, 100, 10, 700, 0, -1),
        (date(2025, 11, 21), "p1", "m1", 1, 100, 10, 300, 0, -1),
        (date(2025, 11, 21), "p1", "m1-2025", 1, 100, 10, 0, 1, -1),
    ]


def test_0015_down_and_up_with_sliced_days(engine: Engine) -> None:
    """Going down to 0014 drops the sliced days' hour rows and marks those days whole (the old
    refresh rebuilds them); going up again, the refresh slices the live day anew. On
    PostgreSQL the trigger is the old one below 0015 and marks the hour from 0015 on."""
    from datetime import UTC, date, datetime

    from sqlalchemy import func, select, text

    from app.reports.unit_costs import unit_costs
    from app.rollups.dirty import mark_slices
    from app.rollups.refresh import dirty_days, refresh
    from app.warehouse.engine import session_scope
    from app.warehouse.tables import LlmCall, Request
    from app.warehouse.tables_rollup import rollup_daily, rollup_sliced

    day = date(2025, 11, 20)
    at = datetime(2025, 11, 20, 14, 30, tzinfo=UTC)
    with session_scope(engine) as session:
        session.add(Request(trace_id="a", started_at=at, root_key="0", updated_at=at))
        session.add(
            LlmCall(
                trace_id="a",
                span_id="1",
                started_at=at,
                provider="p1",
                model="m1",
                family="otel-genai",
                input_tokens=100,
                output_tokens=10,
                cost_nanousd=700,
                price_source="catalog",
                ingested_at=at,
            )
        )
    with engine.begin() as conn:
        mark_slices(conn, [(day, 14)])
    refresh(engine)
    with engine.connect() as conn:
        assert conn.execute(select(rollup_sliced.c.day)).scalars().all() == [day]
        assert conn.execute(select(rollup_daily.c.hour)).scalars().all() == [14]

    command.downgrade(alembic_config(engine), "0014")
    columns = {c["name"] for c in inspect(engine).get_columns("rollup_daily")}
    assert "hour" not in columns and "rollup_sliced" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rollup_daily")).scalar_one() == 0
        assert conn.execute(text("SELECT day FROM rollup_dirty")).scalars().all() in (
            [day],
            ["2025-11-20"],
        )

    upgrade(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == [day]
    refresh(engine)  # the live day rebuilt whole, into hour slices again
    with engine.connect() as conn:
        assert conn.execute(select(rollup_daily.c.hour)).scalars().all() == [14]
        assert conn.execute(select(rollup_sliced.c.day)).scalars().all() == [day]
        total = conn.execute(select(func.sum(rollup_daily.c.token_cost_nanousd))).scalar_one()
    assert total == 700
    [row] = unit_costs(engine, [])
    assert (row.requests, row.cost_nanousd) == (1, 700)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("UPDATE requests SET started_at = started_at - interval '1 hour'"))
            marks = conn.execute(text("SELECT day, hour FROM rollup_dirty")).all()
        assert [tuple(m) for m in marks] == [(day, 14)]
