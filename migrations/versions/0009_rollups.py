"""daily rollups (rollup_daily, rollup_daily_calls, rollup_daily_call_sets, rollup_daily_users,
rollup_daily_user_totals, rollup_daily_user_calls), the days to rebuild
(rollup_dirty), and a trigger marking the old day of a request that moves to another day

Every day that already has requests is marked dirty, so the first refresh builds the rollups
of an existing warehouse (until then, reports read the base tables).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 05:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_MEASURES = (
    'llm_calls', 'input_tokens', 'output_tokens', 'token_cost_nanousd', 'gpu_cost_nanousd',
    'unpriced_calls',
)


def _measures(*extra: str) -> list[sa.Column]:
    return [sa.Column(n, sa.BigInteger(), nullable=False) for n in (*extra, *_MEASURES)]


# A late root span can move a request to another UTC day (load.py's merge takes the root's
# start): the day it leaves must be rebuilt too. load_batch marks the day it lands on.
_SQLITE_TRIGGER = """
CREATE TRIGGER rollup_request_moved AFTER UPDATE OF started_at ON requests
WHEN date(OLD.started_at) IS NOT date(NEW.started_at)
BEGIN
    INSERT INTO rollup_dirty (day) VALUES (date(OLD.started_at));
END
"""
_PG_FUNCTION = """
CREATE FUNCTION rollup_request_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_dirty (day) VALUES (OLD.started_at::date);
    RETURN NULL;
END
$$
"""
_PG_TRIGGER = """
CREATE TRIGGER rollup_request_moved AFTER UPDATE OF started_at ON requests
FOR EACH ROW WHEN (OLD.started_at::date IS DISTINCT FROM NEW.started_at::date)
EXECUTE FUNCTION rollup_request_moved()
"""


def upgrade() -> None:
    op.create_table(
        'rollup_daily',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('endpoint', sa.String(length=512), nullable=False),
        sa.Column('team', sa.String(length=256), nullable=True),
        *_measures('requests'),
    )
    op.create_index('ix_rollup_daily_day', 'rollup_daily', ['day'])
    op.create_table(
        'rollup_daily_calls',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('endpoint', sa.String(length=512), nullable=False),
        sa.Column('team', sa.String(length=256), nullable=True),
        sa.Column('model', sa.String(length=256), nullable=False),
        sa.Column('provider', sa.String(length=64), nullable=False),
        *_measures('requests', 'requests_model', 'requests_provider'),
    )
    op.create_index('ix_rollup_daily_calls_day', 'rollup_daily_calls', ['day'])
    op.create_table(
        'rollup_daily_call_sets',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('endpoint', sa.String(length=512), nullable=False),
        sa.Column('team', sa.String(length=256), nullable=True),
        sa.Column('pairs', sa.Text(), nullable=False),
        sa.Column('requests', sa.BigInteger(), nullable=False),
    )
    op.create_index('ix_rollup_daily_call_sets_day', 'rollup_daily_call_sets', ['day'])
    op.create_table(
        'rollup_daily_users',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('user_id', sa.String(length=256), nullable=True),
        sa.Column('endpoint', sa.String(length=512), nullable=False),
        sa.Column('team', sa.String(length=256), nullable=True),
        *_measures('requests'),
    )
    op.create_index('ix_rollup_daily_users_day', 'rollup_daily_users', ['day'])
    op.create_index('ix_rollup_daily_users_user_id_day', 'rollup_daily_users', ['user_id', 'day'])
    op.create_index(
        'ix_rollup_daily_users_endpoint_day', 'rollup_daily_users', ['endpoint', 'day']
    )
    op.create_table(
        'rollup_daily_user_totals',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('user_id', sa.String(length=256), nullable=True),
        sa.Column('team', sa.String(length=256), nullable=True),
        *_measures('requests'),
    )
    op.create_index('ix_rollup_daily_user_totals_day', 'rollup_daily_user_totals', ['day'])
    op.create_index(
        'ix_rollup_daily_user_totals_user_id_day', 'rollup_daily_user_totals', ['user_id', 'day']
    )
    op.create_table(
        'rollup_daily_user_calls',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('user_id', sa.String(length=256), nullable=True),
        sa.Column('endpoint', sa.String(length=512), nullable=False),
        sa.Column('team', sa.String(length=256), nullable=True),
        sa.Column('model', sa.String(length=256), nullable=False),
        sa.Column('provider', sa.String(length=64), nullable=False),
        *_measures('requests', 'requests_model', 'requests_provider'),
    )
    op.create_index('ix_rollup_daily_user_calls_day', 'rollup_daily_user_calls', ['day'])
    op.create_index(
        'ix_rollup_daily_user_calls_model_day', 'rollup_daily_user_calls', ['model', 'day']
    )
    op.create_index(
        'ix_rollup_daily_user_calls_user_id_day', 'rollup_daily_user_calls', ['user_id', 'day']
    )
    op.create_table(
        'rollup_dirty',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_dirty')),
    )
    op.create_index('ix_rollup_dirty_day', 'rollup_dirty', ['day'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
        op.execute(
            'INSERT INTO rollup_dirty (day) SELECT DISTINCT started_at::date FROM requests'
        )
    else:
        op.execute(_SQLITE_TRIGGER)
        op.execute('INSERT INTO rollup_dirty (day) SELECT DISTINCT date(started_at) FROM requests')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS rollup_request_moved ON requests')
        op.execute('DROP FUNCTION IF EXISTS rollup_request_moved()')
    else:
        op.execute('DROP TRIGGER IF EXISTS rollup_request_moved')
    op.drop_index('ix_rollup_dirty_day', table_name='rollup_dirty')
    op.drop_table('rollup_dirty')
    op.drop_index('ix_rollup_daily_user_calls_user_id_day', table_name='rollup_daily_user_calls')
    op.drop_index('ix_rollup_daily_user_calls_model_day', table_name='rollup_daily_user_calls')
    op.drop_index('ix_rollup_daily_user_calls_day', table_name='rollup_daily_user_calls')
    op.drop_table('rollup_daily_user_calls')
    op.drop_index('ix_rollup_daily_user_totals_user_id_day', table_name='rollup_daily_user_totals')
    op.drop_index('ix_rollup_daily_user_totals_day', table_name='rollup_daily_user_totals')
    op.drop_table('rollup_daily_user_totals')
    op.drop_index('ix_rollup_daily_users_endpoint_day', table_name='rollup_daily_users')
    op.drop_index('ix_rollup_daily_users_user_id_day', table_name='rollup_daily_users')
    op.drop_index('ix_rollup_daily_users_day', table_name='rollup_daily_users')
    op.drop_table('rollup_daily_users')
    op.drop_index('ix_rollup_daily_call_sets_day', table_name='rollup_daily_call_sets')
    op.drop_table('rollup_daily_call_sets')
    op.drop_index('ix_rollup_daily_calls_day', table_name='rollup_daily_calls')
    op.drop_table('rollup_daily_calls')
    op.drop_index('ix_rollup_daily_day', table_name='rollup_daily')
    op.drop_table('rollup_daily')
