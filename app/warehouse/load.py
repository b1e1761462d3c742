"""Load a batch into the warehouse in the caller's transaction.

Requests are merged with what is already stored by one INSERT … ON CONFLICT DO UPDATE whose
CASE expressions mirror `app.traces.attribution.merge`: a candidate replaces the stored one only
when its sortable key is better (a root arriving after its LLM calls fixes the request's
endpoint and user). The merge happens inside the database, so concurrent writers (API replicas,
the worker) cannot lose each other's updates, and no row is read back into Python.

Calls already stored (same trace id + span id: a retried export, an overlapping file) are
skipped by ON CONFLICT DO NOTHING; RETURNING tells how many were new. Loading the same spans
twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Table, and_, case, func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.traces.attribution import with_mapped_team
from app.traces.batch import Batch
from app.warehouse.tables import Base, LlmCall, Request

_CHUNK = 2000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoadCounts:
    requests_seen: int
    calls_new: int
    calls_duplicate: int


def load_batch(session: Session, batch: Batch, user_teams: dict[str, str]) -> LoadCounts:
    now = datetime.now(UTC)
    requests = [
        {**_row(with_mapped_team(facts, user_teams)), "updated_at": now}
        for facts in batch.requests.values()
    ]
    # Core statements on the connection: the ORM's bulk machinery is not needed for rows
    # that never become objects, and costs more than the database work itself.
    conn = session.connection()
    for chunk in _chunks(requests):
        conn.execute(_upsert_requests(session), chunk)
    calls_new = 0
    rows = [{**_row(call), "ingested_at": now} for call in batch.calls.values()]
    calls = LlmCall.__table__
    for chunk in _chunks(rows):
        stmt = insert_ignore(session, LlmCall).returning(calls.c.span_id)
        calls_new += len(conn.execute(stmt, chunk).all())
    return LoadCounts(len(requests), calls_new, len(rows) - calls_new)


def _row(obj: Any) -> dict[str, Any]:
    """A flat dataclass as a dict (dataclasses.asdict deep-copies every value: slow here)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _upsert_requests(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    stmt = _dialect_insert(dialect, Request)
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
