"""The warehouses the conftest hands out (tests/warehouses.py) are exactly what the Alembic
migrations build: a copied SQLite file, and a PostgreSQL schema reset after another test used
it. A schema whose structure a test changed is never handed out again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from app.warehouse.engine import make_engine
from tests.warehouses import (
    PostgresSchemas,
    SqliteTemplate,
    contents,
    migrate_sqlite,
    schema_url,
    structure,
)


def _sqlite_dump(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            schema = sorted(
                tuple(row)
                for row in conn.execute(text("SELECT type, name, sql FROM sqlite_master"))
            )
            rows = {
                table: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{table}"'))))
                for table in inspect(conn).get_table_names()
            }
            pragmas = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "user_version", "application_id", "auto_vacuum")
            }
    finally:
        engine.dispose()
    return {"schema": schema, "rows": rows, "pragmas": pragmas}


def test_the_sqlite_copy_is_a_freshly_migrated_warehouse(
    sqlite_template: SqliteTemplate, tmp_path: Path
) -> None:
    fresh = migrate_sqlite(tmp_path / "fresh.db")
    copy = sqlite_template.copy_to(tmp_path / "copy.db")
    assert _sqlite_dump(copy) == _sqlite_dump(fresh)
    assert _sqlite_dump(copy)["rows"]["alembic_version"]  # at head, not an empty file


def _use_every_kind_of_state(url: str) -> None:
    """What tests do to a warehouse: add rows, take sequence numbers, delete the seeded rows."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO api_tokens (name, scope, token_hash, created_at)"
                    " VALUES ('t', 'ingest', 'h', now())"
                )
            )
            for (sequence,) in conn.execute(
                text(
                    "SELECT relname FROM pg_class WHERE relkind = 'S'"
                    " AND relnamespace = current_schema()::regnamespace"
                )
            ).all():
                conn.execute(text(f"SELECT nextval('{sequence}')"))
            conn.execute(text("DELETE FROM alembic_version"))
            conn.execute(text("DELETE FROM kill_switch_version"))
    finally:
        engine.dispose()


def test_a_reset_postgres_schema_is_a_freshly_migrated_one(
    postgres_schemas: PostgresSchemas,
) -> None:
    schemas = postgres_schemas
    used = schemas.checkout()
    _use_every_kind_of_state(schema_url(schemas.base_url, used))
    schemas.checkin(used)
    assert used in schemas.idle  # kept for reuse, not dropped
    again = schemas.checkout()
    fresh = schemas.migrated()  # by Alembic, as a schema nobody has used
    try:
        assert again != used  # a new name: nothing keyed on the old URL or schema carries over
        with schemas.admin.connect() as conn:
            assert structure(conn, again) == structure(conn, fresh)
            assert contents(conn, again) == contents(conn, fresh)
            assert contents(conn, fresh)["alembic_version"]  # at head, with its seeded rows
    finally:
        schemas.checkin(again)
        schemas.checkin(fresh)


def test_a_schema_a_test_changed_is_dropped_not_reused(postgres_schemas: PostgresSchemas) -> None:
    schemas = postgres_schemas
    changed = schemas.checkout()
    altered = make_engine(schema_url(schemas.base_url, changed))
    try:
        with altered.begin() as conn:
            conn.execute(text("ALTER TABLE api_tokens ADD COLUMN note TEXT"))
    finally:
        altered.dispose()
    schemas.checkin(changed)
    assert changed not in schemas.idle
    with schemas.admin.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM pg_namespace WHERE nspname = :name"), {"name": changed}
        ).scalar()
    assert left == 0
