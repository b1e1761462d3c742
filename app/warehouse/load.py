"""Load a batch into the warehouse in the caller's transaction.

Requests are merged with what is already stored (a root arriving after its LLM calls fixes the
request's endpoint and user), and calls already stored (same trace id + span id: a retried
export, an overlapping file) are skipped, so loading the same spans twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.traces.attribution import RequestFacts, merge, with_mapped_team
from app.traces.batch import Batch
from app.warehouse.tables import Base, LlmCall, Request

_CHUNK = 400
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoadCounts:
    requests_new: int
    requests_updated: int
    calls_new: int
    calls_duplicate: int


def load_batch(session: Session, batch: Batch, user_teams: dict[str, str]) -> LoadCounts:
    now = datetime.now(UTC)
    req_new, req_updated = _load_requests(session, batch.requests, user_teams, now)
    calls_new = _load_calls(session, batch, now)
    return LoadCounts(req_new, req_updated, calls_new, len(batch.calls) - calls_new)


def _row(obj: Any) -> dict[str, Any]:
    """A flat dataclass as a dict (dataclasses.asdict deep-copies every value: slow here)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _facts_of(row: Request) -> RequestFacts:
    return RequestFacts(
        trace_id=row.trace_id,
        started_at=row.started_at,
        root_key=row.root_key,
        root_span_id=row.root_span_id,
        endpoint=row.endpoint,
        service=row.service,
        duration_ms=row.duration_ms,
        user_id=row.user_id,
        user_key=row.user_key,
        team=row.team,
        team_key=row.team_key,
    )


def _load_requests(
    session: Session, facts: dict[str, RequestFacts], user_teams: dict[str, str], now: datetime
) -> tuple[int, int]:
    new: list[dict[str, Any]] = []
    updated = 0
    for ids in _chunks(sorted(facts)):
        stored = {
            r.trace_id: r for r in session.scalars(select(Request).where(Request.trace_id.in_(ids)))
        }
        for trace_id in ids:
            row = stored.get(trace_id)
            incoming = facts[trace_id]
            if row is None:
                merged = with_mapped_team(incoming, user_teams)
                new.append({**_row(merged), "updated_at": now})
                continue
            old = _facts_of(row)
            merged = with_mapped_team(merge(old, incoming), user_teams)
            if merged != old:
                session.execute(
                    update(Request)
                    .where(Request.trace_id == trace_id)
                    .values(**_row(merged), updated_at=now)
                )
                updated += 1
    if new:
        session.execute(insert_ignore(session, Request), new)
    return len(new), updated


def _load_calls(session: Session, batch: Batch, now: datetime) -> int:
    keys = sorted(batch.calls)
    fresh: list[dict[str, Any]] = []
    for chunk in _chunks(keys):
        existing = {
            (trace_id, span_id)
            for trace_id, span_id in session.execute(
                select(LlmCall.trace_id, LlmCall.span_id).where(
                    tuple_(LlmCall.trace_id, LlmCall.span_id).in_(chunk)
                )
            )
        }
        fresh.extend(
            {**_row(batch.calls[k]), "ingested_at": now} for k in chunk if k not in existing
        )
    if fresh:
        session.execute(insert_ignore(session, LlmCall), fresh)
    return len(fresh)


def insert_ignore(session: Session, table: type[Base]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for the session's dialect (a concurrent writer may have
    stored the same key between our read and our write)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"warehouse dialect {name!r} is not supported")
