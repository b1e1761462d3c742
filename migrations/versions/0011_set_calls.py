"""rollup_daily_set_calls and rollup_daily_user_set_calls: rollup_daily_calls and
rollup_daily_user_calls split by the set of (model, provider) pairs the requests called, one
row per pair of the set, so that a filter on several models or providers is answered from the
rollups by user, model or provider too (issue 8)

Every day that already has requests is marked dirty, as 0009 did, so the first refresh fills
the new table for an existing warehouse (until then, reports read the base tables).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 23:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_MEASURES = (
    'requests', 'requests_model', 'requests_provider', 'llm_calls', 'input_tokens',
    'output_tokens', 'token_cost_nanousd', 'gpu_cost_nanousd', 'unpriced_calls',
)
_INDEXES = (
    ('rollup_daily_set_calls', 'ix_rollup_daily_set_calls_day', ['day']),
    ('rollup_daily_user_set_calls', 'ix_rollup_daily_user_set_calls_day', ['day']),
    ('rollup_daily_user_set_calls', 'ix_rollup_daily_user_set_calls_model_day', ['model', 'day']),
    (
        'rollup_daily_user_set_calls',
        'ix_rollup_daily_user_set_calls_user_id_day',
        ['user_id', 'day'],
    ),
)


def upgrade() -> None:
    for table, user in (('rollup_daily_set_calls', False), ('rollup_daily_user_set_calls', True)):
        op.create_table(
            table,
            sa.Column('day', sa.Date(), nullable=False),
            *([sa.Column('user_id', sa.String(length=256), nullable=True)] if user else []),
            sa.Column('endpoint', sa.String(length=512), nullable=False),
            sa.Column('team', sa.String(length=256), nullable=True),
            sa.Column('model', sa.String(length=256), nullable=False),
            sa.Column('provider', sa.String(length=64), nullable=False),
            sa.Column('pairs', sa.Text(), nullable=False),
            *(sa.Column(n, sa.BigInteger(), nullable=False) for n in _MEASURES),
        )
    for table, name, columns in _INDEXES:
        op.create_index(name, table, columns)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('INSERT INTO rollup_dirty (day) SELECT DISTINCT started_at::date FROM requests')
    else:
        op.execute('INSERT INTO rollup_dirty (day) SELECT DISTINCT date(started_at) FROM requests')


def downgrade() -> None:
    for table, name, _columns in _INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table('rollup_daily_user_set_calls')
    op.drop_table('rollup_daily_set_calls')
