"""Shared fixtures: a migrated warehouse on SQLite and on PostgreSQL.

Tests that take `warehouse_url` or `engine` run twice: once on a fresh SQLite file and once on
PostgreSQL in a schema of their own (created for the test, dropped after), so runs and tests
never see each other's rows. PostgreSQL comes from SPENDGUARD_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test. Under CI=true it is mandatory: the run fails
at start if it cannot be reached. Elsewhere its tests are skipped with a reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade

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


def pytest_sessionstart(session: pytest.Session) -> None:
    global _pg_error
    _pg_error = _postgres_problem()
    if _pg_error and UNDER_CI:
        pytest.exit(
            f"PostgreSQL is mandatory under CI but {POSTGRES_URL} is not reachable "
            f"({_pg_error}). Start PostgreSQL or point SPENDGUARD_TEST_POSTGRES_URL at one.",
            returncode=3,
        )


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty warehouse URL of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    if _pg_error:
        pytest.skip(
            f"PostgreSQL not reachable at {POSTGRES_URL} ({_pg_error}); start it or set "
            "SPENDGUARD_TEST_POSTGRES_URL to run these tests (they are mandatory under CI=true)"
        )
    schema = f"sg_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    engine = make_engine(rendered)
    upgrade(engine)
    engine.dispose()
    try:
        yield rendered
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
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite warehouse, for tests whose logic does not depend on the backend."""
    eng = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()
