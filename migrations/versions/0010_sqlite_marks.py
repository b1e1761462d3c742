"""SQLite: drop the trigger marking the day a request leaves (its writer marks it instead)

On SQLite, `load_batch` marks the days a batch's requests are stored on *before* it writes,
under the database's one write lock (`app.rollups.dirty`), which covers the day a request
leaves; and SQLite's upsert into a table with a trigger was 1.6x slower than without (measured
on the ingest bench). PostgreSQL keeps its trigger: there a read before the write could miss
another writer's move.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 11:20:00.000000
"""

from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_SQLITE_TRIGGER = """
CREATE TRIGGER rollup_request_moved AFTER UPDATE OF started_at ON requests
WHEN date(OLD.started_at) IS NOT date(NEW.started_at)
BEGIN
    INSERT INTO rollup_dirty (day) VALUES (date(OLD.started_at));
END
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP TRIGGER IF EXISTS rollup_request_moved')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(_SQLITE_TRIGGER)
