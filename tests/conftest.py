"""Shared fixtures: a migrated warehouse on SQLite and on PostgreSQL.

Tests that take `warehouse_url` or `engine` run twice: once on a SQLite file of their own and once
on PostgreSQL in a schema of their own, so runs and tests never see each other's rows. Both start
as exactly what the Alembic migrations build, without running them per test (tests/warehouses.py
says how); `migrated_url` is a warehouse Alembic has just built, for the migration tests.
PostgreSQL comes from SPENDGUARD_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test. Under CI=true it is mandatory: the run fails
at start if it cannot be reached. Elsewhere its tests are skipped with a reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from app.rollups.refresh import wait_for_background
from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade
from tests.warehouses import (
    PostgresSchemas,
    SqliteTemplate,
    migrate_sqlite,
    new_schema_name,
    schema_url,
)

POSTGRES_URL = os.environ.get(
    "SPENDGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
UNDER_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
FIXTURES = Path(__file__).parent / "fixtures"
# Copies of ../shared/samples in the real outside shapes, so the suite needs nothing beside it.
SAMPLES = FIXTURES / "otlp" / "samples"

_pg_error: str | None = None


def _postgres_problem() -> str | None:
    engine = make_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files that have `slow` tests run first. `make test` hands whole files to its processes in
    this order, so the long ones start early and the many short ones even out the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: files stay together


def pytest_sessionstart(session: pytest.Session) -> None:
    global _pg_error
    _pg_error = _postgres_problem()
    if _pg_error and UNDER_CI:
        pytest.exit(
            f"PostgreSQL is mandatory under CI but {POSTGRES_URL} is not reachable "
            f"({_pg_error}). Start PostgreSQL or point SPENDGUARD_TEST_POSTGRES_URL at one.",
            returncode=3,
        )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[PostgresSchemas]:
    _skip_without_postgres()
    schemas = PostgresSchemas(POSTGRES_URL)
    yield schemas
    schemas.close()


def _skip_without_postgres() -> None:
    if _pg_error:
        pytest.skip(
            f"PostgreSQL not reachable at {POSTGRES_URL} ({_pg_error}); start it or set "
            "SPENDGUARD_TEST_POSTGRES_URL to run these tests (they are mandatory under CI=true)"
        )


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty warehouse URL of each backend (see tests/warehouses.py)."""
    if request.param == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("sqlite_template")
        yield template.copy_to(tmp_path / "warehouse.db")
        wait_for_background()
        return
    schemas: PostgresSchemas = request.getfixturevalue("postgres_schemas")
    schema = schemas.checkout()
    try:
        yield schema_url(POSTGRES_URL, schema)
    finally:
        wait_for_background()  # a dashboard's rollup rebuild must not outlive its warehouse
        schemas.checkin(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A warehouse URL of each backend just migrated by Alembic itself: for the migration tests,
    which must not take the copies and resets of `warehouse_url` on trust."""
    if request.param == "sqlite":
        yield migrate_sqlite(tmp_path / "warehouse.db")
        return
    _skip_without_postgres()
    schema = new_schema_name()
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = schema_url(POSTGRES_URL, schema)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    eng = make_engine(warehouse_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_template: SqliteTemplate, tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite warehouse, for tests whose logic does not depend on the backend."""
    eng = make_engine(sqlite_template.copy_to(tmp_path / "warehouse.db"))
    yield eng
    eng.dispose()


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """For dashboard pages run through AppTest: a clean working directory (a page reads
    ./spendguard.yaml) and fresh Streamlit caches."""
    import streamlit as st

    monkeypatch.delenv("SPENDGUARD_CONFIG", raising=False)
    monkeypatch.delenv("SPENDGUARD_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield tmp_path
    st.cache_data.clear()
    st.cache_resource.clear()
