"""Collector checkpoints: where each source of each collector stopped reading.

Always read and written inside the caller's session, so a collector commits the data of a
batch and the checkpoint that says it was loaded in the same transaction: if the load fails,
the checkpoint does not move and the next run reads the batch again. The value is opaque text
(each collector chooses its own format, usually JSON).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.warehouse.tables import Checkpoint


def read_checkpoint(session: Session, collector: str, source: str) -> str | None:
    """The stored value for one source, or None before its first successful load."""
    return session.execute(
        select(Checkpoint.value).where(
            Checkpoint.collector == collector, Checkpoint.source == source[:512]
        )
    ).scalar_one_or_none()


def read_checkpoints(session: Session, collector: str) -> dict[str, str]:
    """Every source's stored value for one collector."""
    rows = session.execute(
        select(Checkpoint.source, Checkpoint.value).where(Checkpoint.collector == collector)
    )
    return {source: value for source, value in rows}


def write_checkpoint(
    session: Session | Connection, collector: str, source: str, value: str
) -> None:
    """Insert or replace the value (one statement, so two writers cannot collide on insert),
    in the transaction of `session` (or of a connection)."""
    row = {
        "collector": collector,
        "source": source[:512],
        "value": value,
        "updated_at": datetime.now(UTC),
    }
    stmt = _insert(session).values(**row)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Checkpoint.collector, Checkpoint.source],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
    )


def _insert(session: Session | Connection) -> Any:
    bind = session if isinstance(session, Connection) else session.get_bind()
    dialect = bind.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(Checkpoint)
    if dialect == "sqlite":
        return sqlite.insert(Checkpoint)
    raise NotImplementedError(f"warehouse dialect {dialect!r} is not supported")
