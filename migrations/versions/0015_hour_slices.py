"""hour slices for the live days: an `hour` column on every rollup (-1: the row sums a whole
day; 0-23: one UTC hour of a sliced day), an `hour` on the dirty marks (NULL: the whole day),
the days stored as hour slices (`rollup_sliced`), and PostgreSQL's trigger marking the hour a
request leaves

Existing rows are whole days (-1) and existing marks whole days (NULL): nothing to rebuild.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 08:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_ROLLUPS = (
    'rollup_daily',
    'rollup_daily_calls',
    'rollup_daily_call_sets',
    'rollup_daily_users',
    'rollup_daily_user_totals',
    'rollup_daily_user_calls',
    'rollup_daily_set_calls',
    'rollup_daily_user_set_calls',
    'rollup_daily_gpu',
    'rollup_daily_gpu_users',
    'rollup_daily_gpu_user_totals',
    'rollup_daily_gpu_spread',
    'rollup_call_days',
)

# A late root can move a request to another hour of its day: on a sliced day the hour it
# leaves must be rebuilt too (load_batch marks the one it lands on). SQLite reads the stored
# hours before the write instead (app.rollups.dirty).
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION rollup_request_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_dirty (day, hour)
    VALUES (OLD.started_at::date, extract(hour FROM OLD.started_at)::integer);
    RETURN NULL;
END
$$
"""
_PG_TRIGGER = """
CREATE TRIGGER rollup_request_moved AFTER UPDATE OF started_at ON requests
FOR EACH ROW WHEN (
    date_trunc('hour', OLD.started_at) IS DISTINCT FROM date_trunc('hour', NEW.started_at)
)
EXECUTE FUNCTION rollup_request_moved()
"""
_PG_OLD_FUNCTION = """
CREATE OR REPLACE FUNCTION rollup_request_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_dirty (day) VALUES (OLD.started_at::date);
    RETURN NULL;
END
$$
"""
_PG_OLD_TRIGGER = """
CREATE TRIGGER rollup_request_moved AFTER UPDATE OF started_at ON requests
FOR EACH ROW WHEN (OLD.started_at::date IS DISTINCT FROM NEW.started_at::date)
EXECUTE FUNCTION rollup_request_moved()
"""


def upgrade() -> None:
    for name in _ROLLUPS:
        op.add_column(
            name, sa.Column('hour', sa.SmallInteger(), nullable=False, server_default='-1')
        )
    op.add_column('rollup_dirty', sa.Column('hour', sa.SmallInteger(), nullable=True))
    op.create_table('rollup_sliced', sa.Column('day', sa.Date(), primary_key=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS rollup_request_moved ON requests')
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)


def downgrade() -> None:
    # The sliced days' rows go; their days are marked whole, for the old refresh to rebuild.
    op.execute('INSERT INTO rollup_dirty (day) SELECT day FROM rollup_sliced')
    for name in _ROLLUPS:
        op.execute(f'DELETE FROM {name} WHERE hour >= 0')
    op.drop_table('rollup_sliced')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS rollup_request_moved ON requests')
        op.execute(_PG_OLD_FUNCTION)
        op.execute(_PG_OLD_TRIGGER)
    for name in (*_ROLLUPS, 'rollup_dirty'):
        with op.batch_alter_table(name) as batch:
            batch.drop_column('hour')
