"""staged rollup rebuilds: a whole day's pairs (`rollup_staged_pairs`) and the marks they were
read after (`rollup_staged_marks`), committed before the day's rollups are written from them, so
that readers sum them in place of the base tables meanwhile (`app.warehouse.tables_staged`)

UNLOGGED on PostgreSQL: rows that live seconds need no WAL, and a crash empties both tables
together (the day is then read from the base tables until its rebuild).

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

_SUMMED = (
    'llm_calls', 'input_tokens', 'output_tokens', 'token_cost_nanousd', 'gpu_cost_nanousd',
    'unpriced_calls', 'trued_cost_nanousd', 'trued_up_calls',
)


def upgrade() -> None:
    prefixes = ['UNLOGGED'] if op.get_bind().dialect.name == 'postgresql' else []
    op.create_table(
        'rollup_staged_pairs',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('trace_id', sa.String(length=32), nullable=True),
        sa.Column('hour', sa.Integer(), nullable=True),
        sa.Column('user_id', sa.String(length=256), nullable=True),
        sa.Column('endpoint', sa.String(length=512), nullable=True),
        sa.Column('team', sa.String(length=256), nullable=True),
        sa.Column('model', sa.String(length=256), nullable=True),
        sa.Column('provider', sa.String(length=64), nullable=True),
        sa.Column('pairs', sa.Text(), nullable=True),
        *(sa.Column(n, sa.BigInteger(), nullable=True) for n in _SUMMED),
        sa.Column('is_first', sa.Integer(), nullable=True),
        sa.Column('is_first_provider', sa.Integer(), nullable=True),
        sa.Column('is_first_model', sa.Integer(), nullable=True),
        prefixes=prefixes,
    )
    op.create_index('ix_rollup_staged_pairs_day', 'rollup_staged_pairs', ['day'])
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
    op.drop_table('rollup_staged_pairs')
