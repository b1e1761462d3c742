"""cheaper ingest writes: drop the indexes the rollups made redundant, and SQLite's trigger
marking the day a request leaves (its writer marks it instead)

- `requests` (user_id, started_at) and (team, started_at), `llm_calls` (provider,
  started_at): by user, team or provider the dashboard and `report unit-costs` read the daily
  rollups (migration 0009); what still reads the base tables scans a time window. Trace ids are
  random, so every index costs every insert a random page: these three were 15% of SQLite's
  write time on the ingest bench.
- SQLite: `load_batch` marks the days a batch's requests are stored on *before* it writes, under
  the database's one write lock (`app.rollups.dirty`), which covers the day a request leaves,
  and SQLite's upsert into a table with a trigger ran 1.6x slower than without. PostgreSQL keeps
  its trigger: there a read before the write could miss another writer's move.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 11:20:00.000000
"""

from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_INDEXES = (
    ('requests', 'ix_requests_user_id_started_at', ['user_id', 'started_at']),
    ('requests', 'ix_requests_team_started_at', ['team', 'started_at']),
    ('llm_calls', 'ix_llm_calls_provider_started_at', ['provider', 'started_at']),
)
_SQLITE_TRIGGER = """
CREATE TRIGGER rollup_request_moved AFTER UPDATE OF started_at ON requests
WHEN date(OLD.started_at) IS NOT date(NEW.started_at)
BEGIN
    INSERT INTO rollup_dirty (day) VALUES (date(OLD.started_at));
END
"""


def upgrade() -> None:
    for table, name, _columns in _INDEXES:
        op.drop_index(name, table_name=table)
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP TRIGGER IF EXISTS rollup_request_moved')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(_SQLITE_TRIGGER)
    for table, name, columns in _INDEXES:
        op.create_index(name, table, columns)
