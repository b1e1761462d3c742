"""Engines and sessions for the warehouse URL (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import WarehouseError


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so the API and worker can share it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise WarehouseError(
            f"database url {url!r} is not a SQLAlchemy URL; "
            "e.g. sqlite:///spendguard.db or "
            "postgresql+psycopg://user@host:5432/db"
        ) from None
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, pool_pre_ping=True, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# PostgreSQL settings for the reports' reads, for their transaction only: they fetch a day's
# (or an hour's) rows by index, which the default page cost makes the planner trade for a hash
# join over a whole table; JIT compiles for longer (0.6 s) than such a query runs; and a day's
# rows sort in memory.
READ_SETTINGS = ("random_page_cost = 1.1", "jit = off", "work_mem = '64MB'")


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection whose statements all see one state of the warehouse, for a
    reader that takes the rollups' stale days and hours in one statement and the rows in the
    next (`app.rollups.stale.dirty_in`): a refresh committing in between must not make the two
    disagree. PostgreSQL: a REPEATABLE READ transaction (with READ_SETTINGS); SQLite (WAL): a
    read transaction, begun explicitly (the driver begins none for a SELECT)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                for setting in READ_SETTINGS:
                    conn.exec_driver_sql(f"SET LOCAL {setting}")
                yield conn
        return
    with engine.connect() as conn:
        driver = conn.connection.dbapi_connection
        # (A connection already in a transaction, a shared in-memory one, keeps it: its
        # holder's uncommitted work is not ours to roll back.)
        began = engine.dialect.name == "sqlite" and not getattr(driver, "in_transaction", False)
        if began:
            conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            if began:
                conn.rollback()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as session:
        yield session


def check_connection(engine: Engine) -> None:
    """Fail with a readable message if the warehouse cannot be reached."""
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise WarehouseError(
            f"cannot connect to the warehouse at {where}: "
            f"{exc.orig}. Check database.url in spendguard.yaml or SPENDGUARD_DATABASE_URL."
        ) from None
