"""The daily rollups answer every unit-cost question exactly as the base tables do.

Random traces arrive in random batches and orders (through `load_batch`, both of its row
forms), roots late and on another day, then maybe a re-price and a GPU allocation; after a
refresh, every question the rollups accept is asked of both, on SQLite and PostgreSQL. Plus the
bookkeeping: what marks a day, a refresh that runs twice, the lock, the migration's seeding.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select

from app.gpu.allocate import refresh as allocate
from app.reports.unit_costs import COLUMNS, Scope, cost_query, unit_cost_query, unit_costs
from app.reprice import reprice
from app.rollups.query import rollup_query
from app.rollups.refresh import dirty_days, refresh
from app.settings import PriceOverride, Settings
from app.traces.attribution import RequestFacts
from app.traces.batch import Batch, CallRow
from app.warehouse.engine import session_scope
from app.warehouse.load import load_batch, prepare
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_gpu import GpuAllocation, GpuCost, GpuPoolHour
from app.warehouse.tables_rollup import ROLLUPS, rollup_call_days, rollup_dirty, rollup_sliced
from app.warehouse.tables_staged import TWINS, rollup_staged_marks
from app.warehouse.tables_weekly import WEEKLY, rollup_weeks

DAY = date(2025, 11, 20)
T0 = datetime(2025, 11, 20, tzinfo=UTC)
MODELS = ("m1", "m2", "llama")
PROVIDERS = ("p1", "p2")
POOL = {"name": "gpu", "match": {"tag": {"gpu-pool": "gpu"}}, "models": ["llama"]}
OVERRIDES = [
    PriceOverride(provider=p, model=m, input_per_mtok="0.50", output_per_mtok="1.25")
    for p in PROVIDERS
    for m in ("m1", "m2")
]
DIMS = [
    (),
    ("endpoint",),
    ("user",),
    ("team",),
    ("model",),
    ("provider",),
    ("endpoint", "model"),
    ("model", "provider"),
    ("user", "model"),
    ("team", "provider"),
    ("endpoint", "team", "user"),
    ("user", "provider"),
    ("endpoint", "provider"),
]
FILTERS: list[dict[str, list[str]]] = [
    {},
    {"model": ["m1"]},
    {"provider": ["p2"]},
    {"model": ["m1"], "provider": ["p1"]},
    {"model": ["m1", "m2"]},
    {"provider": ["p1", "p2"], "endpoint": ["/a", "(none)"]},
    {"model": ["m1", "llama"], "provider": ["p1", "p2"]},
    {"endpoint": ["/a"]},
    {"user": ["u1", "u2"]},
    {"team": ["t1"], "model": ["llama"]},
]
# Several models or providers in one group: each request once per group, by any dimension.
SEVERAL: list[dict[str, list[str]]] = [
    {"model": ["m1", "m2"]},
    {"model": ["m2", "llama", "m1"]},
    {"provider": ["p2", "p1"]},
    {"model": ["m1", "m2"], "provider": ["p2"]},
    {"model": ["llama", "m2"], "provider": ["p1", "p2"]},
    {"model": ["m1"], "provider": ["p1", "p2"], "user": ["u1", "u3"]},
    {"model": ["m1", "llama"], "endpoint": ["/b"], "team": ["t1"]},
]
RANGES = [(None, None), (DAY, DAY + timedelta(days=1)), (DAY + timedelta(days=1), None)]


def _facts(trace: str, at: datetime, root: bool, endpoint: str, user: str | None) -> RequestFacts:
    # A root candidate ("0…") beats any other ("5…"), whenever it arrives (see load.py).
    key = ("0" if root else "5") + at.isoformat()
    team = None if user is None else f"t{int(user[1:]) % 2}"
    return RequestFacts(
        trace_id=trace,
        started_at=at,
        root_key=key,
        root_span_id="r" if root else None,
        endpoint=endpoint if root else "(none)",
        service=None,
        duration_ms=None,
        user_id=user,
        user_key=None if user is None else key,
        team=team,
        team_key=None if team is None else key,
    )


@st.composite
def traffic(draw: Any) -> dict[str, Any]:
    traces = []
    for t in range(draw(st.integers(1, 8))):
        trace = f"{t:032x}"
        first = T0 + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60 - 1)))
        calls = [
            CallRow(
                trace,
                f"{s:016x}",
                first + timedelta(seconds=s),
                draw(st.integers(0, 5000)),
                draw(st.sampled_from(PROVIDERS)),
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
            for s in range(draw(st.integers(0, 3)))
        ]
        user = draw(st.sampled_from([None, "u1", "u2", "u3"]))
        pieces: list[Any] = [_facts(trace, first, False, "", user), *calls]
        if draw(st.booleans()):  # a root, maybe late, maybe a day earlier or later
            shift = timedelta(hours=draw(st.integers(-30, 30)))
            endpoint = draw(st.sampled_from(["/a", "/b"]))
            pieces.append(_facts(trace, first + shift, True, endpoint, user))
        traces.append(pieces)
    pieces = [p for trace in traces for p in trace]
    order = draw(st.permutations(range(len(pieces))))
    cuts = sorted(draw(st.lists(st.integers(0, len(pieces)), max_size=3)))
    return {
        "pieces": [pieces[i] for i in order],
        "cuts": cuts,
        "prepared": draw(st.booleans()),
        "reprice": draw(st.booleans()),
        "gpu": draw(st.booleans()),
        "reloads": draw(st.booleans()),
    }


def _load(engine: Engine, pieces: list[Any], cuts: list[int], prepared: bool) -> None:
    bounds = [0, *cuts, len(pieces)]
    for lo, hi in itertools.pairwise(bounds):
        batch = Batch()
        for piece in pieces[lo:hi]:
            if isinstance(piece, RequestFacts):
                old = batch.requests.get(piece.trace_id)
                if old is None or piece.root_key < old.root_key:
                    batch.requests[piece.trace_id] = piece
            else:
                batch.calls[(piece.trace_id, piece.span_id)] = piece
                if piece.trace_id not in batch.requests:  # every span brings its trace's facts
                    at = piece.started_at
                    batch.requests[piece.trace_id] = _facts(piece.trace_id, at, False, "", None)
        if not batch.requests:
            continue
        with session_scope(engine) as session:
            if prepared:
                prepare(session.get_bind().dialect, batch, {})
            load_batch(session, batch, {})


def _allocate_gpu(engine: Engine) -> None:
    with session_scope(engine) as session:
        for day in range(4):
            start = T0 + timedelta(days=day - 1)
            session.add(
                GpuCost(
                    source="focus",
                    source_key="test",
                    slice_key=start.date().isoformat(),
                    period_start=start,
                    period_end=start + timedelta(days=1),
                    charge_category="usage",
                    tags='{"gpu-pool":"gpu"}',
                    amount_nano=24 * 10**9 + 7,
                    currency="USD",
                    fetched_at=datetime.now(UTC),
                )
            )
    allocate(engine, Settings(gpu_pools=[POOL]), DAY - timedelta(days=1), DAY + timedelta(days=3))  # type: ignore[list-item]


def _empty(engine: Engine) -> None:
    with session_scope(engine) as session:
        for table in (GpuAllocation, GpuPoolHour, GpuCost, LlmCall, Request):
            session.execute(delete(table))
        for rollup in (*ROLLUPS, rollup_call_days, rollup_dirty, rollup_sliced, rollup_weeks):
            session.execute(delete(rollup))
        for staged in (*TWINS.values(), rollup_staged_marks):
            session.execute(delete(staged))
        for weekly in WEEKLY.values():
            session.execute(delete(weekly))


def _rows(engine: Engine, query: Any) -> list[tuple[tuple[str, Any], ...]]:
    """The rows of a unit-cost query, comparable across the two paths (days as text, sums as
    int), without the empty groups `unit_costs` drops too."""
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    out = []
    for r in rows:
        if not r["requests"]:
            continue
        norm = {
            k: str(v)[:10] if k == "day" else v if isinstance(v, str) else int(v)
            for k, v in r.items()
        }
        out.append(tuple(sorted(norm.items())))
    return sorted(out)


def _base(dims: tuple[str, ...], scope: Scope, by_day: bool) -> Any:
    query = unit_cost_query(dims, scope)
    if by_day:
        day = func.date(Request.started_at)
        query = query.add_columns(day.label("day")).group_by(day)
    return query


def assert_rollups_answer_like_the_base_tables(engine: Engine, rnd: random.Random) -> int:
    """Every grouping, each with a filter, a range and a daily split drawn at random, and again
    with a filter on several models or providers. The rollups answer every one of them."""
    asked = 0
    for dims in DIMS:
        for filters in (rnd.choice(FILTERS), rnd.choice(SEVERAL)):
            since, until = rnd.choice(RANGES)
            by_day = rnd.random() < 0.5
            rolled = rollup_query(dims, filters, since, until, by_day=by_day)
            assert rolled is not None, (dims, filters)
            expected = _rows(engine, _base(dims, Scope(since, until, filters), by_day))
            assert _rows(engine, rolled) == expected, (dims, filters, since, until, by_day)
            asked += 1
    return asked


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(traffic(), st.randoms(use_true_random=False))
def test_rollups_equal_the_base_tables(
    engine: Engine, case: dict[str, Any], rnd: random.Random
) -> None:
    _empty(engine)
    _load(engine, case["pieces"], case["cuts"], case["prepared"])
    if case["reloads"]:  # the same spans again: nothing changes
        _load(engine, case["pieces"], [], not case["prepared"])
    if case["reprice"]:
        refresh(engine)  # so the re-price's own marks are what keeps the rollups right
        reprice(engine, Settings(pricing={"overrides": OVERRIDES}), None)
    if case["gpu"]:
        refresh(engine)
        _allocate_gpu(engine)
    result = refresh(engine)
    assert not result.busy
    with engine.connect() as conn:
        assert dirty_days(conn) == []
    assert assert_rollups_answer_like_the_base_tables(engine, rnd) > 0


def _call(trace: str, span: int, provider: str, model: str, cost: int) -> CallRow:
    at = T0 + timedelta(hours=1, seconds=span)
    return CallRow(trace, f"{span:016x}", at, 10, provider, model, None, None, None,
                   "otel-genai", 100, 0, 0, 10, 0, cost, "catalog")  # fmt: skip


def test_several_models_by_user_model_and_provider(engine: Engine) -> None:
    """A request that called two of the chosen models (one of them from two providers) counts
    once for its user, once per model it called and once per provider, from the rollups."""
    a, b, c = "a" * 32, "b" * 32, "c" * 32
    at = T0 + timedelta(hours=1)
    pieces = [
        _facts(a, at, True, "/a", "u1"),
        _call(a, 1, "p1", "m1", 1),
        _call(a, 2, "p1", "m2", 10),
        _call(a, 3, "p2", "m2", 100),
        _facts(b, at, True, "/a", "u1"),
        _call(b, 4, "p2", "m1", 1000),
        _call(b, 5, "p2", "llama", 10000),
        _facts(c, at, True, "/b", "u2"),
        _call(c, 6, "p1", "llama", 100000),
    ]
    _load(engine, pieces, [], False)
    refresh(engine)

    def answer(dims: list[str], filters: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
        with engine.connect() as conn:
            assert "rollup_daily" in str(cost_query(conn, dims, Scope(filters=filters)))
        rolled = rollup_query(dims, filters, None, None)
        assert _rows(engine, rolled) == _rows(engine, unit_cost_query(dims, Scope(filters=filters)))
        rows = unit_costs(engine, dims, Scope(filters=filters))
        return {"/".join(r.group.values()): (r.requests, r.cost_nanousd) for r in rows}

    two = {"model": ["m2", "m1"]}
    assert answer(["user"], two) == {"u1": (2, 1111)}
    assert answer(["user", "endpoint"], {**two, "provider": ["p2"]}) == {"u1//a": (2, 1100)}
    assert answer(["model"], {"provider": ["p1", "p2"], "user": ["u1"]}) == {
        "m1": (2, 1001),
        "m2": (1, 110),
        "llama": (1, 10000),
    }
    assert answer(["provider"], two) == {"p1": (1, 11), "p2": (2, 1100)}
    assert answer(["provider", "user"], {"model": ["llama", "m2"]}) == {
        "p2/u1": (2, 10100),
        "p1/u1": (1, 10),
        "p1/u2": (1, 100000),
    }
    assert answer(["team"], {"provider": ["p2", "p1"], "endpoint": ["/a"]}) == {"t1": (2, 11111)}
    assert answer([], {"model": ["llama", "m1"], "user": ["u1", "u2"]}) == {"": (3, 111001)}


def test_a_filter_of_too_many_models_reads_the_base_tables() -> None:
    """The first-pair test grows with the square of the chosen values: past MAX_ORDERED of
    them (by user: models × providers), the base tables answer."""
    from app.rollups.query import MAX_ORDERED

    many = [f"m{i}" for i in range(MAX_ORDERED + 1)]
    assert rollup_query(["user"], {"model": many}, None, None) is None
    assert rollup_query(["model"], {"model": many}, None, None) is not None  # requests_model
    assert rollup_query(["provider"], {"model": many[:-1]}, None, None) is not None
    five_by_ten = {"model": many[:5], "provider": list("abcdefghij")}
    assert rollup_query(["user"], five_by_ten, None, None) is None
    assert rollup_query(["team"], five_by_ten, None, None) is not None  # a linear test


def filter_options_from_base(conn: Any, dim: str, scope: Scope) -> list[str]:
    """`filter_options` from the base tables only (the rollups' way must list the same)."""
    column = COLUMNS[dim]
    cost = func.coalesce(func.sum(LlmCall.cost_nanousd), 0)
    join_on = LlmCall.trace_id == Request.trace_id
    query = select(column).select_from(Request)
    if dim in {"model", "provider"}:
        query = query.join(LlmCall, join_on)
    else:
        query = query.outerjoin(LlmCall, join_on)
    query = query.where(*scope.conditions(), column.is_not(None)).group_by(column)
    return [str(v) for v in conn.execute(query.order_by(cost.desc(), column)).scalars()]
