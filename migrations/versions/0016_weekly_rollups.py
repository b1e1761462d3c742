"""weekly rollups: the per-user and per-model daily rollups summed over whole UTC weeks
(Monday to Sunday), keyed by the week's Monday, and `rollup_weeks`, the weeks whose sums are
current and how many of their days (from the Monday) they sum

Created empty: readers use the daily rows of any week not in `rollup_weeks`, and the next
rollup refresh (after an ingest or collector run, or by the worker) sums the weeks.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 12:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

_SUMMED = (
    'llm_calls', 'input_tokens', 'output_tokens', 'token_cost_nanousd', 'gpu_cost_nanousd',
    'unpriced_calls', 'trued_cost_nanousd', 'trued_up_calls',
)
_BY_CALL = ('requests', 'requests_model', 'requests_provider', *_SUMMED)
_BY_REQUEST = ('requests', *_SUMMED)


def _keys(*names: str) -> list[sa.Column]:
    types = {
        'user_id': sa.String(length=256),
        'endpoint': sa.String(length=512),
        'team': sa.String(length=256),
        'model': sa.String(length=256),
        'provider': sa.String(length=64),
        'pairs': sa.Text(),
    }
    nullable = {'user_id', 'team'}
    return [sa.Column(n, types[n], nullable=n in nullable) for n in names]


# table: (keys, summed columns, indexed columns beside `week`)
_TABLES = {
    'rollup_weekly_calls': (('endpoint', 'team', 'model', 'provider'), _BY_CALL, ()),
    'rollup_weekly_call_sets': (('endpoint', 'team', 'pairs'), ('requests',), ()),  # no sums
    'rollup_weekly_set_calls': (
        ('endpoint', 'team', 'model', 'provider', 'pairs'), _BY_CALL, (),
    ),
    'rollup_weekly_users': (('user_id', 'endpoint', 'team'), _BY_REQUEST, ('user_id', 'endpoint')),
    'rollup_weekly_user_totals': (('user_id', 'team'), _BY_REQUEST, ('user_id',)),
    'rollup_weekly_user_calls': (
        ('user_id', 'endpoint', 'team', 'model', 'provider'), _BY_CALL, ('model', 'user_id'),
    ),
    'rollup_weekly_user_set_calls': (
        ('user_id', 'endpoint', 'team', 'model', 'provider', 'pairs'), _BY_CALL, ('model', 'user_id'),
    ),
}


def upgrade() -> None:
    for table, (keys, measures, indexed) in _TABLES.items():
        op.create_table(
            table,
            sa.Column('week', sa.Date(), nullable=False),
            *_keys(*keys),
            *(sa.Column(n, sa.BigInteger(), nullable=False) for n in measures),
        )
        op.create_index(f'ix_{table}_week', table, ['week'])
        for column in indexed:
            op.create_index(f'ix_{table}_{column}_week', table, [column, 'week'])
    op.create_table(
        'rollup_weeks',
        sa.Column('week', sa.Date(), nullable=False),
        sa.Column('days', sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint('week', name=op.f('pk_rollup_weeks')),
    )


def downgrade() -> None:
    op.drop_table('rollup_weeks')
    for table in _TABLES:
        op.drop_table(table)  # with its indexes
