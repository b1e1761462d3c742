"""staged rollup rebuilds: a twin of each rollup (`rollup_staged_<name>`, the same columns,
indexed by day) for the rows of the days being rebuilt whole, and the marks they were summed
after (`rollup_staged_marks`), committed before they replace the days' rows, so that readers
read them in place of the base tables meanwhile (`app.warehouse.tables_staged`)

The twins copy their rollup's columns as the database has them at this revision. UNLOGGED on
PostgreSQL: rows that live seconds need no WAL, and a crash empties every table here together
(the day is then read from the base tables until its rebuild).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 18:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

_ROLLUPS = (
    'rollup_daily', 'rollup_daily_calls', 'rollup_daily_call_sets', 'rollup_daily_users',
    'rollup_daily_user_totals', 'rollup_daily_user_calls', 'rollup_daily_set_calls',
    'rollup_daily_user_set_calls', 'rollup_daily_gpu', 'rollup_daily_gpu_users',
    'rollup_daily_gpu_user_totals', 'rollup_daily_gpu_spread', 'rollup_call_days',
)


def _twin(name: str) -> str:
    return name.replace('rollup_', 'rollup_staged_', 1)


def upgrade() -> None:
    bind = op.get_bind()
    prefixes = ['UNLOGGED'] if bind.dialect.name == 'postgresql' else []
    for name in _ROLLUPS:
        source = sa.Table(name, sa.MetaData(), autoload_with=bind)
        twin = _twin(name)
        op.create_table(
            twin,
            *(sa.Column(c.name, c.type, nullable=c.nullable) for c in source.c),
            prefixes=prefixes,
        )
        op.create_index(f'ix_{twin}_day', twin, ['day'])
    op.create_table(
        'rollup_staged_marks',
        sa.Column('mark_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint('mark_id', name=op.f('pk_rollup_staged_marks')),
        prefixes=prefixes,
    )
    op.create_index('ix_rollup_staged_marks_day', 'rollup_staged_marks', ['day'])


def downgrade() -> None:
    op.drop_table('rollup_staged_marks')
    for name in _ROLLUPS:
        op.drop_table(_twin(name))
