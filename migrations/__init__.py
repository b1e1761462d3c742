"""Alembic migrations; every schema change is a revision here that runs on SQLite and PostgreSQL."""
