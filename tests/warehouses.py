"""Migrated, empty warehouses for tests, made once per test process and then copied or reset.

Running the Alembic migrations costs about 0.3 s on SQLite and 0.8 s on PostgreSQL, plus 0.2 s
to drop the schema after (creating and dropping twenty tables with their indexes and sequences is
slow on a PostgreSQL that syncs its catalog to disk), and most of the suite's tests each want a
fresh warehouse. So:

- **SQLite**: `SqliteTemplate` migrates one file with `upgrade()` and every test gets a byte copy
  of it (what Alembic wrote, exactly).
- **PostgreSQL**: `PostgresSchemas` hands each test a schema of its own under a name never used
  before, as it always did. A schema is made by `upgrade()` the first time; when its test is
  done, it is checked against the pristine one and, if its structure is unchanged, emptied back
  to the pristine rows and sequence values (one TRUNCATE, no table created or dropped) and
  kept for the next test, which gets it renamed. A schema whose structure a test changed (a
  migration test going down and up, an added column, …) is dropped instead. The pristine one, a
  schema migrated by `upgrade()` that no test ever sees, is what resets copy their rows from.

tests/test_warehouses.py checks that a reset warehouse is exactly a freshly migrated one and that
a changed one is never handed out again.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade


def migrate_sqlite(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    # Closing the last connection checkpoints the WAL into the file and removes it.
    engine.dispose()
    return url


class SqliteTemplate:
    """One migrated SQLite file; `copy_to` gives a test its own copy."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"
        migrate_sqlite(self.path)

    def copy_to(self, path: Path) -> str:
        shutil.copyfile(self.path, path)
        return f"sqlite:///{path}"


def schema_url(base_url: str, schema: str) -> str:
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def new_schema_name() -> str:
    return f"sg_test_{uuid.uuid4().hex[:12]}"


# Everything that makes up a schema's structure, with the schema's own name taken out (index and
# default definitions name it): relations, columns in order with types, defaults and nullability,
# constraints, indexes, views, functions, types and triggers.
_STRUCTURE = """
SELECT 'relation', c.relname, c.relkind::text, c.relpersistence::text
  FROM pg_class c WHERE c.relnamespace = CAST(:schema AS regnamespace)
UNION ALL
SELECT 'column', c.relname, a.attnum::text || ' ' || a.attname::text,
       format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
       || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
       || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
       || ' collation=' || a.attcollation::text
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = CAST(:schema AS regnamespace) AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'dropped column', c.relname, a.attnum::text, ''
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = CAST(:schema AS regnamespace) AND a.attisdropped
UNION ALL
SELECT 'constraint', coalesce(c.relname, ''), k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k LEFT JOIN pg_class c ON c.oid = k.conrelid
 WHERE k.connamespace = CAST(:schema AS regnamespace)
UNION ALL
SELECT 'index', c.relname, i.relname, pg_get_indexdef(i.oid)
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
 WHERE c.relnamespace = CAST(:schema AS regnamespace)
UNION ALL
SELECT 'view', c.relname, '', pg_get_viewdef(c.oid)
  FROM pg_class c WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relkind IN ('v', 'm')
UNION ALL
SELECT 'sequence', c.relname, s.seqtypid::regtype::text,
       s.seqstart || ' ' || s.seqincrement || ' ' || s.seqmin || ' ' || s.seqmax
       || ' ' || s.seqcache || ' ' || s.seqcycle
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
 WHERE c.relnamespace = CAST(:schema AS regnamespace)
UNION ALL
SELECT 'function', p.proname, pg_get_function_identity_arguments(p.oid), md5(p.prosrc)
  FROM pg_proc p WHERE p.pronamespace = CAST(:schema AS regnamespace)
UNION ALL
SELECT 'type', t.typname, t.typtype::text, ''
  FROM pg_type t WHERE t.typnamespace = CAST(:schema AS regnamespace)
UNION ALL
SELECT 'trigger', c.relname, t.tgname, pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = CAST(:schema AS regnamespace)
"""


def structure(conn: Connection, schema: str) -> list[tuple[str, ...]]:
    """The schema's structure as sorted rows, with its own name replaced by `<schema>`."""
    rows = conn.execute(text(_STRUCTURE), {"schema": f'"{schema}"'}).all()
    own = (f'"{schema}".', f"{schema}.")
    normalised = []
    for row in rows:
        fields = []
        for field in row:
            value = str(field)
            for prefix in own:
                value = value.replace(prefix, "<schema>.")
            fields.append(value)
        normalised.append(tuple(fields))
    return sorted(normalised)


def tables(conn: Connection, schema: str) -> list[str]:
    return list(
        conn.execute(
            text(
                "SELECT relname FROM pg_class WHERE relnamespace = CAST(:schema AS regnamespace)"
                " AND relkind IN ('r', 'p') ORDER BY relname"
            ),
            {"schema": f'"{schema}"'},
        ).scalars()
    )


def contents(conn: Connection, schema: str) -> dict[str, Any]:
    """Every table's rows and every sequence's state, to compare two schemas."""
    found: dict[str, Any] = {}
    for table in tables(conn, schema):
        rows = conn.execute(text(f'SELECT * FROM "{schema}"."{table}"')).all()
        found[table] = sorted(tuple(map(repr, row)) for row in rows)
    for (sequence,) in conn.execute(
        text(
            "SELECT relname FROM pg_class WHERE relnamespace = CAST(:schema AS regnamespace)"
            " AND relkind = 'S' ORDER BY relname"
        ),
        {"schema": f'"{schema}"'},
    ):
        state = conn.execute(text(f'SELECT last_value, is_called FROM "{schema}"."{sequence}"'))
        found[f"sequence {sequence}"] = tuple(state.one())
    return found


class PostgresSchemas:
    """Per test process: migrated schemas for tests, reused after a reset when unchanged."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.admin = make_engine(base_url)
        self.pristine = self.migrated()
        with self.admin.connect() as conn:
            self.structure = structure(conn, self.pristine)
            self._reset_sql = self._reset_script(conn)
        self.idle: list[str] = []

    def migrated(self) -> str:
        """A new schema brought to head by the real Alembic migrations."""
        schema = new_schema_name()
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = make_engine(schema_url(self.base_url, schema))
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return schema

    def _reset_script(self, conn: Connection) -> str:
        """Statements that bring a used schema (`{schema}`) back to the pristine one's data."""
        names = tables(conn, self.pristine)
        # TRUNCATE rather than DELETE: new, empty files, so rows come back in the order they
        # were written, as from a new table (a query without ORDER BY must not see a difference).
        statements = ["TRUNCATE " + ", ".join(f'"{{schema}}"."{table}"' for table in names)]
        for table in names:
            has_rows = conn.execute(text(f'SELECT 1 FROM "{self.pristine}"."{table}" LIMIT 1'))
            if has_rows.first():
                statements.append(
                    f'INSERT INTO "{{schema}}"."{table}" SELECT * FROM "{self.pristine}"."{table}"'
                )
        sequences = conn.execute(
            text(
                "SELECT relname FROM pg_class WHERE relnamespace = CAST(:schema AS regnamespace)"
                " AND relkind = 'S' ORDER BY relname"
            ),
            {"schema": f'"{self.pristine}"'},
        ).scalars()
        for sequence in sequences:
            last, called = conn.execute(
                text(f'SELECT last_value, is_called FROM "{self.pristine}"."{sequence}"')
            ).one()
            statements.append(
                f'SELECT setval(\'"{{schema}}"."{sequence}"\', {int(last)}, {bool(called)})'
            )
        return ";\n".join(statements)

    def checkout(self) -> str:
        """A pristine warehouse in a schema under a new name; returns the schema."""
        if not self.idle:
            return self.migrated()
        schema = new_schema_name()
        with self.admin.begin() as conn:
            conn.execute(text(f'ALTER SCHEMA "{self.idle.pop()}" RENAME TO "{schema}"'))
        return schema

    def checkin(self, schema: str) -> None:
        """Reset the schema for another test if its structure is unchanged, else drop it."""
        with self.admin.begin() as conn:
            # A test that left a transaction open on its tables fails here rather than hangs.
            conn.execute(text("SET LOCAL lock_timeout = '60s'"))
            if structure(conn, schema) == self.structure:
                conn.exec_driver_sql(self._reset_sql.replace("{schema}", schema))
                self.idle.append(schema)
                return
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

    def close(self) -> None:
        with self.admin.begin() as conn:
            for schema in [*self.idle, self.pristine]:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        self.idle.clear()
        self.admin.dispose()
