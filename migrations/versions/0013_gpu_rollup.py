"""rollup_daily_gpu, rollup_daily_gpu_users, rollup_daily_gpu_user_totals and
rollup_daily_gpu_spread: the allocated GPU shares by request day, the calls' UTC day, pool,
endpoint, team, model (and user), so that the GPU cost page and `spendguard report gpu --by`
read a few rows per day instead of joining every allocation of the period to its call and
request (issue 8)

The request days that have GPU shares are marked dirty, so the first refresh fills the new
tables for an existing warehouse (until then, the GPU breakdowns read those days from the base
tables); days without a share have nothing to roll up.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 03:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_SUMMED = ('requests', 'calls', 'gpu_cost_nanousd')
_INDEXES = (
    ('rollup_daily_gpu', 'ix_rollup_daily_gpu_day', ['day']),
    ('rollup_daily_gpu', 'ix_rollup_daily_gpu_call_day', ['call_day']),
    ('rollup_daily_gpu_users', 'ix_rollup_daily_gpu_users_day', ['day']),
    ('rollup_daily_gpu_users', 'ix_rollup_daily_gpu_users_call_day', ['call_day']),
    (
        'rollup_daily_gpu_users',
        'ix_rollup_daily_gpu_users_user_id_call_day',
        ['user_id', 'call_day'],
    ),
    ('rollup_daily_gpu_user_totals', 'ix_rollup_daily_gpu_user_totals_day', ['day']),
    ('rollup_daily_gpu_user_totals', 'ix_rollup_daily_gpu_user_totals_call_day', ['call_day']),
    (
        'rollup_daily_gpu_user_totals',
        'ix_rollup_daily_gpu_user_totals_user_id_call_day',
        ['user_id', 'call_day'],
    ),
    ('rollup_daily_gpu_spread', 'ix_rollup_daily_gpu_spread_day', ['day']),
    ('rollup_daily_gpu_spread', 'ix_rollup_daily_gpu_spread_call_day', ['call_day']),
)
_MARK = """
INSERT INTO rollup_dirty (day)
SELECT DISTINCT {day}
FROM gpu_allocations g
JOIN requests r ON r.trace_id = g.trace_id
"""


def upgrade() -> None:
    op.create_table(
        'rollup_daily_gpu',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('call_day', sa.Date(), nullable=False),
        sa.Column('pool', sa.String(length=128), nullable=False),
        sa.Column('endpoint', sa.String(length=512), nullable=False),
        sa.Column('team', sa.String(length=256), nullable=True),
        sa.Column('model', sa.String(length=256), nullable=False),
        *(sa.Column(n, sa.BigInteger(), nullable=False) for n in _SUMMED),
    )
    op.create_table(
        'rollup_daily_gpu_users',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('call_day', sa.Date(), nullable=False),
        sa.Column('pool', sa.String(length=128), nullable=False),
        sa.Column('user_id', sa.String(length=256), nullable=True),
        sa.Column('endpoint', sa.String(length=512), nullable=False),
        sa.Column('team', sa.String(length=256), nullable=True),
        sa.Column('model', sa.String(length=256), nullable=False),
        *(sa.Column(n, sa.BigInteger(), nullable=False) for n in _SUMMED),
    )
    op.create_table(
        'rollup_daily_gpu_user_totals',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('call_day', sa.Date(), nullable=False),
        sa.Column('pool', sa.String(length=128), nullable=False),
        sa.Column('user_id', sa.String(length=256), nullable=True),
        sa.Column('team', sa.String(length=256), nullable=True),
        sa.Column('model', sa.String(length=256), nullable=False),
        *(sa.Column(n, sa.BigInteger(), nullable=False) for n in _SUMMED),
    )
    op.create_table(
        'rollup_daily_gpu_spread',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('call_day', sa.Date(), nullable=False),
        sa.Column('pool', sa.String(length=128), nullable=False),
        sa.Column('model', sa.String(length=256), nullable=False),
        sa.Column('trace_id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.String(length=256), nullable=True),
        sa.Column('endpoint', sa.String(length=512), nullable=False),
        sa.Column('team', sa.String(length=256), nullable=True),
    )
    for table, name, columns in _INDEXES:
        op.create_index(name, table, columns)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_MARK.format(day='r.started_at::date'))
    else:
        op.execute(_MARK.format(day='date(r.started_at)'))


def downgrade() -> None:
    for table, name, _columns in _INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table('rollup_daily_gpu_spread')
    op.drop_table('rollup_daily_gpu_user_totals')
    op.drop_table('rollup_daily_gpu_users')
    op.drop_table('rollup_daily_gpu')
