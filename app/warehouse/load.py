"""Load a batch into the warehouse in the caller's transaction.

Requests are merged with what is already stored by one INSERT … ON CONFLICT DO UPDATE whose
CASE expressions mirror `app.traces.attribution.merge`: a candidate replaces the stored one only
when its sortable key is better (a root arriving after its LLM calls fixes the request's
endpoint and user). The merge happens inside the database, so concurrent writers (API replicas,
the worker) cannot lose each other's updates, and no row is read back into Python.

Calls already stored (same trace id + span id: a retried export, an overlapping file) are
skipped by ON CONFLICT DO NOTHING; the driver's row count tells how many were new. Loading the
same spans twice changes nothing.

How rows travel, fastest first (each path writes the same rows; tests compare them):
- PostgreSQL, batches of `COPY_MIN_ROWS` rows or more: COPY into temporary staging tables, then
  one INSERT … SELECT … ON CONFLICT per table, in primary-key order (concurrent writers take
  row locks in the same order, so they cannot deadlock each other).
- SQLite: the same statements run by the driver's `executemany` on the raw connection (one
  prepared statement, no per-row work in SQLAlchemy).
- PostgreSQL, small batches (an OTLP push of a few spans): plain multi-row INSERTs, which cost
  less than creating the staging tables for them.
Datetimes are converted by the columns' own SQLAlchemy types, so stored values are identical
whichever path wrote them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Connection, Table, and_, case, column, func, or_, select
from sqlalchemy import table as table_clause
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from app.rollups.dirty import marks_rollups
from app.traces.attribution import RequestFacts, with_mapped_team
from app.traces.batch import Batch, CallRow, DriverRows
from app.warehouse.tables import Base, LlmCall, Request
from app.warehouse.types import UtcDateTime

_CHUNK = 2000
COPY_MIN_ROWS = 500  # below this many rows PostgreSQL takes plain INSERTs (no staging tables)
T = TypeVar("T")

REQUEST_COLUMNS = (*RequestFacts._fields, "updated_at")
CALL_COLUMNS = (*CallRow._fields, "ingested_at")
_STAGE_REQUESTS = "sg_stage_requests"
_STAGE_CALLS = "sg_stage_calls"


@dataclass(frozen=True, slots=True)
class LoadCounts:
    requests_seen: int
    calls_new: int
    calls_duplicate: int


@marks_rollups  # the days of the batch's requests: their rollups are stale
def load_batch(session: Session, batch: Batch, user_teams: dict[str, str]) -> LoadCounts:
    """Write one batch (its requests merged, its new calls inserted) in the session's
    transaction. The one place a batch of spans is written, whatever brought it."""
    now = datetime.now(UTC)
    conn = session.connection()
    dialect = conn.dialect
    rows = batch.rows
    if rows is None and wants_rows(dialect.name, batch):
        rows = _driver_rows(dialect, batch, user_teams)
    if rows is None or rows.dialect != dialect.name:
        if rows is not None:
            raise ValueError(f"batch prepared for {rows.dialect}, written to {dialect.name}")
        requests = [with_mapped_team(facts, user_teams) for facts in batch.requests.values()]
        calls = list(batch.calls.values())
        calls_new = _write_portable(conn, requests, calls, now)
        return LoadCounts(len(requests), calls_new, len(calls) - calls_new)
    if dialect.name == "sqlite":
        calls_new = _write_sqlite(conn, rows, now)
    else:
        calls_new = _write_copy(conn, rows, now)
    return LoadCounts(len(rows.requests), calls_new, len(rows.calls) - calls_new)


def wants_rows(dialect: str, batch: Batch) -> bool:
    """Whether the batch is written from driver rows: always on SQLite; on PostgreSQL when it
    is big enough for COPY."""
    if dialect == "sqlite":
        return True
    return dialect == "postgresql" and len(batch.requests) + len(batch.calls) >= COPY_MIN_ROWS


def prepare(dialect: Dialect, batch: Batch, user_teams: dict[str, str]) -> None:
    """Turn the batch's requests and calls into driver rows for `dialect` now (in a decode
    worker), if it will be written from them; `load_batch` then only adds the write time."""
    if batch.rows is None and wants_rows(dialect.name, batch):
        batch.rows = _driver_rows(dialect, batch, user_teams)
        batch.requests = {}
        batch.calls = {}


def _driver_rows(dialect: Dialect, batch: Batch, user_teams: dict[str, str]) -> DriverRows:
    requests = [with_mapped_team(facts, user_teams) for facts in batch.requests.values()]
    return DriverRows(
        dialect.name,
        _convert(dialect, "requests", requests),
        _convert(dialect, "calls", list(batch.calls.values())),
        batch.unpriced,
    )


# ── conversions ──────────────────────────────────────────────────────────────────────────────

_Procs = tuple[Callable[[Any], Any] | None, ...]
_CONVERTERS: dict[tuple[str, str], _Procs] = {}
_ORDERS: dict[tuple[str, str], tuple[int, ...]] = {}


def _converters(dialect: Dialect, name: str) -> _Procs:
    """Per column of REQUEST_COLUMNS or CALL_COLUMNS, its type's bind processor (None: as is)."""
    key = (dialect.name, name)
    if key not in _CONVERTERS:
        _CONVERTERS[key] = _make_converters(dialect, name)
    return _CONVERTERS[key]


def _make_converters(dialect: Dialect, name: str) -> _Procs:
    table = cast(Table, (Request if name == "requests" else LlmCall).__table__)
    names = REQUEST_COLUMNS if name == "requests" else CALL_COLUMNS
    procs = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in names]
    return tuple(
        _fast_datetime(dialect, p) if isinstance(table.c[c].type, UtcDateTime) else p
        for c, p in zip(names, procs, strict=True)
    )


_SAMPLES = (
    datetime(2025, 11, 20, 0, 55, 13, tzinfo=UTC),
    datetime(2025, 11, 20, 0, 55, 13, 999_999, tzinfo=UTC),
    datetime(999, 1, 2, 3, 4, 5, 6, UTC),
    datetime(1969, 12, 31, 23, 59, 59, 1, UTC),
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def _fast_datetime(dialect: Dialect, slow: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """The column type's conversion of a UTC datetime, done in one C call: SQLite's stored text
    (`YYYY-MM-DD HH:MM:SS.ffffff`), or a naive UTC datetime for PostgreSQL. Used only if it
    gives exactly what the type gives (checked on samples); anything but a UTC datetime takes
    the type's own way."""
    assert slow is not None
    # SQLite's text per whole second (calls come many to a second), the microseconds added:
    # half the cost of `isoformat` for each value.
    seconds_text: dict[int, str] = {}

    def sqlite_text(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is UTC:
            seconds, micros = divmod((value - _EPOCH) // _ONE_US, 1_000_000)
            head = seconds_text.get(seconds)
            if head is None:
                if len(seconds_text) >= 100_000:
                    seconds_text.clear()
                head = seconds_text[seconds] = value.isoformat(" ", "seconds")[:19] + "."
            return head + str(1_000_000 + micros)[1:]
        return slow(value)

    def naive(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is UTC:
            return value.replace(tzinfo=None)
        return slow(value)

    for fast in (sqlite_text, naive):
        if all(fast(d) == slow(d) and type(fast(d)) is type(slow(d)) for d in _SAMPLES):
            return fast
    return slow


def _param_order(dialect: Dialect, name: str) -> tuple[int, ...]:
    """The order the driver takes a row's values in, as indexes into REQUEST_COLUMNS or
    CALL_COLUMNS: the compiled statement's on SQLite, the COPY column list (as is) on
    PostgreSQL. The write time (the last of those columns) must come last."""
    key = (dialect.name, name)
    if key not in _ORDERS:
        names = REQUEST_COLUMNS if name == "requests" else CALL_COLUMNS
        order = tuple(range(len(names)))
        if dialect.name == "sqlite":
            order = _compiled(dialect, name)[1]
        if order[-1] != len(names) - 1:
            raise NotImplementedError(f"{name}: the write time must be the last parameter")
        _ORDERS[key] = order
    return _ORDERS[key]


def _convert(dialect: Dialect, name: str, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Rows with every value as the driver takes it, in its order, but the write time."""
    return list(map(_row_converter(dialect, name), rows))


_ROW_CONVERTERS: dict[tuple[str, str], Callable[[tuple[Any, ...]], tuple[Any, ...]]] = {}


def _row_converter(dialect: Dialect, name: str) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """One row's conversion as a single expression, `lambda r: (r[0], p2(r[2]), …)`, built
    once per dialect and table: it runs for every stored row, and one tuple display costs
    far less than a loop over the columns."""
    key = (dialect.name, name)
    if key not in _ROW_CONVERTERS:
        procs = _converters(dialect, name)[:-1]
        order = _param_order(dialect, name)[:-1]
        names = {f"p{i}": p for i, p in enumerate(procs) if p is not None}
        items = [f"p{i}(r[{i}])" if procs[i] is not None else f"r[{i}]" for i in order]
        source = f"lambda r: ({', '.join(items)},)"
        _ROW_CONVERTERS[key] = eval(source, names)  # noqa: S307 (built from column indexes)
    return _ROW_CONVERTERS[key]


def _stamped(dialect: Dialect, name: str, rows: list[tuple[Any, ...]], now: datetime) -> Any:
    stamp = _converters(dialect, name)[-1]
    tail = (stamp(now) if stamp else now,)
    return [row + tail for row in rows]


# ── SQLite: executemany on the raw connection ───────────────────────────────────────────────


def _write_sqlite(conn: Connection, rows: DriverRows, now: datetime) -> int:
    dialect = conn.dialect
    cursor = conn.connection.cursor()
    try:
        upsert_sql = _compiled(dialect, "requests")[0]
        cursor.executemany(upsert_sql, _stamped(dialect, "requests", rows.requests, now))
        insert_sql = _compiled(dialect, "calls")[0]
        cursor.executemany(insert_sql, _stamped(dialect, "calls", rows.calls, now))
        # executemany sums the changes of every row: ignored duplicates count 0.
        return max(0, int(cursor.rowcount)) if rows.calls else 0
    finally:
        cursor.close()


_COMPILED: dict[tuple[str, str], tuple[str, tuple[int, ...]]] = {}


def _compiled(dialect: Dialect, name: str) -> tuple[str, tuple[int, ...]]:
    """The SQL of a table's statement for a positional driver, and the order of its parameters
    as indexes into REQUEST_COLUMNS/CALL_COLUMNS."""
    key = (dialect.name, name)
    if key not in _COMPILED:
        names = REQUEST_COLUMNS if name == "requests" else CALL_COLUMNS
        if name == "requests":
            stmt = _upsert_requests(dialect.name, _dialect_insert(dialect.name, Request))
        else:
            stmt = _dialect_insert(dialect.name, LlmCall).on_conflict_do_nothing()
        compiled = stmt.compile(dialect=dialect, column_keys=list(names))
        order = tuple(names.index(k) for k in compiled.positiontup or ())
        _COMPILED[key] = (str(compiled), order)
    return _COMPILED[key]


# ── PostgreSQL: COPY into staging tables, then one INSERT … SELECT per table ────────────────


def _write_copy(conn: Connection, rows: DriverRows, now: datetime) -> int:
    dialect = conn.dialect
    raw = conn.connection.driver_connection
    assert raw is not None
    requests, calls = rows.requests, rows.calls
    with raw.cursor() as cur:
        for stage, table, columns, part in (
            (_STAGE_REQUESTS, "requests", REQUEST_COLUMNS, requests),
            (_STAGE_CALLS, "llm_calls", CALL_COLUMNS, calls),
        ):
            # Temporary: private to this connection, no WAL; emptied at commit, and here, so a
            # second batch in the same transaction starts from an empty one too.
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            cur.execute(f"DELETE FROM {stage}")
            if part:
                kind = "requests" if table == "requests" else "calls"
                with cur.copy(f"COPY {stage} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in _stamped(dialect, kind, part, now):
                        copy.write_row(row)
    calls_new = 0
    if requests:
        conn.execute(_upsert_from_stage())
    if calls:
        cols = ", ".join(CALL_COLUMNS)
        result = conn.exec_driver_sql(
            f"INSERT INTO llm_calls ({cols}) SELECT {cols} FROM {_STAGE_CALLS} "
            "ORDER BY trace_id, span_id ON CONFLICT DO NOTHING"
        )
        calls_new = max(0, result.rowcount)
    return calls_new


@cache
def _upsert_from_stage() -> Any:
    stage = table_clause(_STAGE_REQUESTS, *(column(c) for c in REQUEST_COLUMNS))
    source = select(*(stage.c[c] for c in REQUEST_COLUMNS)).order_by(stage.c.trace_id)
    stmt = postgresql.insert(Request).from_select(list(REQUEST_COLUMNS), source)
    return _upsert_requests("postgresql", stmt)


# ── portable: SQLAlchemy Core executemany (PostgreSQL's small batches) ─────────────────────


def _write_portable(
    conn: Connection, requests: list[RequestFacts], calls: list[CallRow], now: datetime
) -> int:
    name = conn.dialect.name
    request_rows = [{**r._asdict(), "updated_at": now} for r in requests]
    for chunk in _chunks(request_rows):
        conn.execute(_upsert_requests(name, _dialect_insert(name, Request)), chunk)
    calls_new = 0
    call_rows = [{**c._asdict(), "ingested_at": now} for c in calls]
    table = LlmCall.__table__
    for chunk in _chunks(call_rows):
        stmt = _dialect_insert(name, LlmCall).on_conflict_do_nothing().returning(table.c.span_id)
        calls_new += len(conn.execute(stmt, chunk).all())
    return calls_new


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


# ── the merge ────────────────────────────────────────────────────────────────────────────────


def _upsert_requests(dialect: str, stmt: Any) -> Any:
    """`stmt` (an INSERT into requests, of values or from a SELECT) merging into stored rows."""
    new, old = stmt.excluded, Request.__table__.c

    def better(a: Any, b: Any) -> ColumnElement[bool]:
        # Keys compare bytewise; PostgreSQL's default collation may not, so ask for "C".
        result: ColumnElement[bool] = a < (b.collate("C") if dialect == "postgresql" else b)
        return result

    root_better = better(new.root_key, old.root_key)
    user_better = or_(old.user_key.is_(None), better(new.user_key, old.user_key))
    team_better = or_(old.team_key.is_(None), better(new.team_key, old.team_key))
    earliest = (func.least if dialect == "postgresql" else func.min)(old.started_at, new.started_at)
    same_root = new.root_key == old.root_key
    take_root = {c: case((root_better, new[c]), else_=old[c]) for c in _ROOT_COLUMNS}
    return stmt.on_conflict_do_update(
        index_elements=[Request.trace_id],
        set_={
            **take_root,
            "started_at": case(
                (root_better, new.started_at),
                (same_root, earliest),
                else_=old.started_at,
            ),
            "user_id": case((user_better, new.user_id), else_=old.user_id),
            "user_key": case((user_better, new.user_key), else_=old.user_key),
            "team": case((team_better, new.team), else_=old.team),
            "team_key": case((team_better, new.team_key), else_=old.team_key),
            "updated_at": new.updated_at,
        },
        # Touch the row only when something improves: a re-load writes nothing.
        where=or_(
            root_better,
            and_(new.user_key.is_not(None), user_better),
            and_(new.team_key.is_not(None), team_better),
            and_(same_root, new.started_at < old.started_at),
        ),
    )


_ROOT_COLUMNS = ("root_key", "root_span_id", "endpoint", "service", "duration_ms")


def _dialect_insert(dialect: str, table: type[Base]) -> Any:
    core = cast(Table, table.__table__)
    if dialect == "postgresql":
        return postgresql.insert(core)
    if dialect == "sqlite":
        return sqlite.insert(core)
    raise NotImplementedError(f"warehouse dialect {dialect!r} is not supported")


def insert_ignore(session: Session, table: type[Base]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for the session's dialect."""
    return _dialect_insert(session.get_bind().dialect.name, table).on_conflict_do_nothing()
