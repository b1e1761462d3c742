"""Named locks held across processes and machines, so that with several workers on one
warehouse only one runs a given collector at a time (the others stand by).

    with named_lock(engine, "collector:openai") as held:
        if not held:
            ...  # another process holds it: skip this run

Never waits: `held` says at once whether this process got the lock (`waiting_lock` tries again
for a while, on the same connection or file). Released when the block
ends, and by the operating system or the database server when the holder dies (crash, SIGKILL,
lost machine), so there is no lease to expire and no stale lock to clean up.

- **PostgreSQL**: a session-level advisory lock (`pg_try_advisory_lock`) on a connection of its
  own, opened for the block and closed after it. The server drops the lock when that session
  ends, including when its client dies. The 64-bit key is the first 8 bytes of
  SHA-256(`<schema>:<name>`), so warehouses in different schemas of one database do not share
  locks.
- **SQLite**: an exclusive `flock` on a file beside the database, `<database>.<name>.lock`
  (the file stays; the lock is what matters). The kernel releases it when the holder's file
  descriptor closes, i.e. when the block ends or the process dies. SQLite warehouses are local
  files, so every worker sharing one runs on that machine. An in-memory database has a lock
  per process (it cannot be shared anyway).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger("spendguard.locks")

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


@contextmanager
def named_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Hold the lock `name` for the block if nobody else holds it; yields whether it is held."""
    with waiting_lock(engine, name, 0) as held:
        yield held


@contextmanager
def waiting_lock(engine: Engine, name: str, seconds: float, every: float = 0.2) -> Iterator[bool]:
    """`named_lock`, tried again every `every` seconds for up to `seconds` while another
    process holds it (on the one connection or file it opened); yields whether it is held."""
    deadline = time.monotonic() + seconds
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, name, deadline, every) as held:
            yield held
        return
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        with _process_lock(name, seconds) as held:
            yield held
        return
    with _file_lock(lock_path(database, name), deadline, every) as held:
        yield held


def transaction_lock(session: Session, name: str) -> bool:
    """Take the lock `name` until `session`'s transaction ends (commit or rollback), if nobody
    holds it; never waits. Whether it is held. On PostgreSQL a transaction-level advisory lock
    on the session's own connection (`pg_try_advisory_xact_lock`: the same key as
    `named_lock`'s, which it excludes and is excluded by); elsewhere `named_lock`'s file (or
    process) lock, released when the transaction ends."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        key = advisory_key(str(schema), name)
        return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())
    root = session.get_transaction()
    held = session.info.setdefault(_HELD, [])
    if any(entry[0] is root and entry[1] == name for entry in held):
        return True  # (this transaction's already, as PostgreSQL's is)
    lock = named_lock(conn.engine, name)
    if not lock.__enter__():
        lock.__exit__(None, None, None)
        return False
    if not event.contains(session, "after_transaction_end", _release):
        event.listen(session, "after_transaction_end", _release)
    held.append((root, name, lock))
    return True


def wait_transaction_lock(conn: Connection, name: str) -> None:
    """PostgreSQL: wait for the lock `name` and hold it until `conn`'s transaction ends
    (`pg_advisory_xact_lock`). Elsewhere nothing: SQLite's writers take turns anyway."""
    if conn.dialect.name == "postgresql":
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        key = advisory_key(str(schema), name)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


_HELD = "spendguard.transaction_locks"


def _release(session: Session, transaction: SessionTransaction) -> None:
    """The locks `transaction_lock` took for this transaction, released as it ends."""
    held = session.info.get(_HELD, [])
    for entry in [e for e in held if e[0] is transaction]:
        held.remove(entry)
        entry[2].__exit__(None, None, None)


def _tries(deadline: float, every: float) -> Iterator[None]:
    """Once, then again every `every` seconds until `deadline` (time.monotonic)."""
    yield
    while time.monotonic() + every <= deadline:
        time.sleep(every)
        yield


def advisory_key(schema: str, name: str) -> int:
    """The signed 64-bit advisory lock key of `name` in `schema`."""
    digest = hashlib.sha256(f"{schema}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_path(database: str, name: str) -> Path:
    """The lock file of `name` beside a SQLite database file."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
    return Path(f"{database}.{safe}.lock")


@contextmanager
def _advisory_lock(engine: Engine, name: str, deadline: float, every: float) -> Iterator[bool]:
    conn = engine.connect()
    held = False
    try:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        key = advisory_key(str(schema), name)
        for _ in _tries(deadline, every):
            try_lock = text("SELECT pg_try_advisory_lock(:k)")
            held = bool(conn.execute(try_lock, {"k": key}).scalar())
            # The lock belongs to the session, not the transaction: end the transaction so
            # the connection does not sit "idle in transaction" while the run goes on.
            conn.commit()
            if held:
                break
        yield held
    finally:
        try:
            if held:  # at once, so the next holder need not wait for the session to end
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        except Exception as exc:  # the session is gone: so is its lock
            log.warning("lock %s: unlock failed (%s); closing its session", name, exc)
        finally:
            # Never back to the pool (a pooled session would keep a lock it failed to drop):
            # closed, and the server releases whatever advisory lock the session still had.
            conn.invalidate()
            conn.close()


@contextmanager
def _file_lock(path: Path, deadline: float, every: float) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        held = False
        for _ in _tries(deadline, every):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            held = True
            break
        if not held:
            yield False
            return
        try:
            # Who holds it, for an operator looking at the file; the lock does not need it.
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}\n".encode())
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _process_lock(name: str, seconds: float) -> Iterator[bool]:
    with _local_guard:
        lock = _local_locks.setdefault(name, threading.Lock())
    if not (lock.acquire(timeout=seconds) if seconds > 0 else lock.acquire(blocking=False)):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
