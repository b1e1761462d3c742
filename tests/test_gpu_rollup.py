"""The GPU rollups answer every GPU breakdown exactly as the base tables do.

Random traces (calls of two pooled models in two pools, some either side of midnight, roots
late and on another day) arrive in random batches and orders; the pools are allocated, maybe
re-allocated another way, maybe after more spans came, and the rollups are refreshed or left
with dirty days, maybe staged. Then `allocation_query` (rollups for clean days, their twins for
staged ones, base tables for other dirty ones) answers like `base_allocation_query` by every
breakdown, filter, pool choice and range, on SQLite and PostgreSQL: the same costs, calls and
distinct requests.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from app.gpu.allocate import refresh as allocate
from app.gpu.report import allocation_query, allocation_rows, base_allocation_query
from app.rollups.refresh import dirty_days, plan, refresh
from app.rollups.staging import stage, stage_pairs, stage_twins
from app.settings import Settings
from app.traces.batch import CallRow
from app.warehouse.engine import session_scope
from app.warehouse.tables_gpu import GpuAllocation, GpuCost
from tests.test_rollups import _empty, _facts, _load

DAY = date(2025, 11, 20)
T0 = datetime(2025, 11, 20, tzinfo=UTC)
MODELS = ("m1", "llama", "mistral")
POOLS = [
    {"name": "gpu", "match": {"tag": {"gpu-pool": "gpu"}}, "models": ["llama"]},
    {"name": "gpu2", "match": {"tag": {"gpu-pool": "gpu2"}}, "models": ["mistral"]},
]
# The same pools shared another way: by tokens, and with a capacity (part of each hour idle).
OTHER_POOLS = [
    {**POOLS[0], "allocate_by": "tokens"},
    {**POOLS[1], "capacity_per_hour": 20},
]
DIMS = [
    (),
    ("endpoint",),
    ("model",),
    ("user",),
    ("team",),
    ("pool",),
    ("endpoint", "model"),
    ("user", "pool"),
    ("team", "model", "user"),
]
FILTERS: list[dict[str, list[str]]] = [
    {},
    {"endpoint": ["/a"]},
    {"model": ["llama"]},
    {"model": ["llama", "mistral"]},
    {"user": ["u1", "u2"]},
    {"team": ["t1"], "model": ["mistral"]},
    {"endpoint": ["/b", "(none)"], "user": ["u3"]},
]
CHOSEN_POOLS: list[tuple[str, ...]] = [(), ("gpu",), ("gpu2", "gpu")]
RANGES = [
    (None, None),
    (DAY, DAY + timedelta(days=1)),
    (DAY + timedelta(days=1), None),
    (DAY - timedelta(days=1), DAY + timedelta(days=2)),
]


@st.composite
def traffic(draw: Any) -> dict[str, Any]:
    pieces: list[Any] = []
    for t in range(draw(st.integers(1, 8))):
        trace = f"{t:032x}"
        # Often late in a day, so that a request's calls can fall either side of midnight.
        day = draw(st.integers(0, 2))
        minute = draw(st.one_of(st.integers(0, 24 * 60 - 1), st.integers(22 * 60, 24 * 60 - 1)))
        first = T0 + timedelta(days=day, minutes=minute)
        calls = [
            CallRow(
                trace,
                f"{s:016x}",
                first + timedelta(minutes=draw(st.integers(0, 150))),
                draw(st.integers(0, 5000)),
                "p1",
                draw(st.sampled_from(MODELS)),
                None,
                None,
                None,
                "otel-genai",
                draw(st.integers(0, 10**6)),
                0,
                0,
                draw(st.integers(0, 10**5)),
                0,
                draw(st.one_of(st.none(), st.integers(0, 10**9))),
                "catalog",
            )
            for s in range(draw(st.integers(0, 4)))
        ]
        user = draw(st.sampled_from([None, "u1", "u2", "u3"]))
        pieces += [_facts(trace, first, False, "", user), *calls]
        if draw(st.booleans()):  # a root, maybe late, maybe a day earlier or later
            shift = timedelta(hours=draw(st.integers(-30, 30)))
            endpoint = draw(st.sampled_from(["/a", "/b"]))
            pieces.append(_facts(trace, first + shift, True, endpoint, user))
    order = draw(st.permutations(range(len(pieces))))
    return {
        "pieces": [pieces[i] for i in order],
        "cuts": sorted(draw(st.lists(st.integers(0, len(pieces)), max_size=3))),
        "held": draw(st.integers(0, 100)),  # the share of the spans loaded before allocating
        "reallocate": draw(st.booleans()),
        "refresh_at_end": draw(st.booleans()),
        "prepared": draw(st.booleans()),
    }


def _bill(engine: Engine) -> None:
    """Both pools billed every hour of the days the traffic can reach."""
    with session_scope(engine) as session:
        for pool in ("gpu", "gpu2"):
            for day in range(-2, 5):
                start = T0 + timedelta(days=day)
                session.add(
                    GpuCost(
                        source="focus",
                        source_key=pool,
                        slice_key=start.date().isoformat(),
                        period_start=start,
                        period_end=start + timedelta(days=1),
                        charge_category="usage",
                        tags=f'{{"gpu-pool":"{pool}"}}',
                        amount_nano=24 * 10**9 + 7,
                        currency="USD",
                        fetched_at=datetime.now(UTC),
                    )
                )


def _allocate(engine: Engine, pools: list[dict[str, Any]]) -> None:
    settings_ = Settings(gpu_pools=pools)  # type: ignore[arg-type]
    assert not allocate(engine, settings_, DAY - timedelta(days=2), DAY + timedelta(days=5)).busy


def _rows(engine: Engine, query: Any) -> list[tuple[tuple[str, Any], ...]]:
    """A breakdown's rows, comparable across the two paths, without the groups of no call
    (`allocation_rows` drops them too)."""
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    out = [
        tuple(sorted((k, v if isinstance(v, str) else int(v or 0)) for k, v in r.items()))
        for r in rows
        if int(r["calls"] or 0)
    ]
    return sorted(out)


def assert_breakdowns_equal_the_base_tables(engine: Engine, rnd: random.Random) -> int:
    asked = 0
    for dims in DIMS:
        for filters in (rnd.choice(FILTERS), rnd.choice(FILTERS)):
            since, until = rnd.choice(RANGES)
            pools = rnd.choice(CHOSEN_POOLS)
            args = (dims, since, until, pools, filters)
            with engine.connect() as conn:
                query = allocation_query(conn, *args)
            assert _rows(engine, query) == _rows(engine, base_allocation_query(*args)), args
            asked += 1
    return asked


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(traffic(), st.randoms(use_true_random=False))
def test_gpu_breakdowns_from_the_rollups_equal_the_base_tables(
    engine: Engine, case: dict[str, Any], rnd: random.Random
) -> None:
    _empty(engine)
    _bill(engine)
    pieces = case["pieces"]
    cut = case["held"] * len(pieces) // 100
    _load(engine, pieces[:cut], [], case["prepared"])
    _allocate(engine, POOLS)
    refresh(engine)
    _load(engine, pieces[cut:], case["cuts"], case["prepared"])  # later spans: days marked
    _allocate(engine, OTHER_POOLS if case["reallocate"] else POOLS)
    if case["refresh_at_end"]:
        assert not refresh(engine).busy
    with engine.connect() as conn:
        dirty = dirty_days(conn)
    if case["refresh_at_end"]:
        assert dirty == []
    elif rnd.random() < 0.5:  # the refresh has staged the days it rebuilds whole, or
        with engine.connect() as conn:  # committed the first step of their staging only
            whole = [job for job in plan(conn) if job.hours is None]
        for job in whole:
            if rnd.random() < 0.5:
                stage(engine, job)
            else:  # cut off after some steps: the GPU twins written or not
                stage_pairs(engine, job)
                stage_twins(engine, job, limit=rnd.randrange(3))
    assert assert_breakdowns_equal_the_base_tables(engine, rnd) > 0
    # The total is every share of the range, to the nano-dollar.
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(GpuAllocation.gpu_cost_nanousd))).scalar() or 0
        assert dirty_days(conn) == dirty  # readers never rebuilt anything themselves
    assert sum(r.gpu_cost_nanousd for r in allocation_rows(engine, ["pool"])) == total


def _call(trace: str, span: int, model: str, at: datetime) -> CallRow:
    return CallRow(trace, f"{span:016x}", at, 1000, "p1", model, None, None, None, "otel-genai",
                   100, 0, 0, 10, 0, None, "catalog")  # fmt: skip


def test_a_request_over_two_pools_and_midnight_counts_once_from_the_rollups(
    engine: Engine,
) -> None:
    """A request that used both pools, on both sides of midnight, is one request of its
    endpoint and user, one of each model and pool, read from the rollups alone."""
    a, b = "a" * 32, "b" * 32
    evening = T0 + timedelta(hours=23, minutes=30)
    pieces = [
        _facts(a, evening, True, "/a", "u1"),
        _call(a, 1, "llama", evening),
        _call(a, 2, "llama", evening + timedelta(hours=1)),  # the next UTC day
        _call(a, 3, "mistral", evening + timedelta(minutes=5)),
        _facts(b, evening, True, "/a", "u2"),
        _call(b, 4, "llama", evening + timedelta(minutes=10)),
    ]
    _bill(engine)
    _load(engine, pieces, [], False)
    _allocate(engine, POOLS)
    refresh(engine)
    with engine.connect() as conn:
        sql = str(allocation_query(conn, ["endpoint"]))
    assert "rollup_daily_gpu" in sql and "gpu_allocations" not in sql

    def requests(dims: list[str], *args: Any, **kwargs: Any) -> dict[str, tuple[int, int]]:
        rows = allocation_rows(engine, dims, *args, **kwargs)
        return {"/".join(r.group.values()): (r.requests, r.calls) for r in rows}

    assert requests(["endpoint"]) == {"/a": (2, 4)}
    assert requests(["user"]) == {"u1": (1, 3), "u2": (1, 1)}
    assert requests(["model"]) == {"llama": (2, 3), "mistral": (1, 1)}
    assert requests(["pool", "team"]) == {"gpu/t1": (1, 2), "gpu/t0": (1, 1), "gpu2/t1": (1, 1)}
    assert requests(["endpoint"], DAY + timedelta(days=1)) == {"/a": (1, 1)}
    assert requests(["endpoint"], pools=["gpu2"]) == {"/a": (1, 1)}
    assert requests(["user"], filters={"model": ["mistral", "llama"]}) == {
        "u1": (1, 3),
        "u2": (1, 1),
    }
