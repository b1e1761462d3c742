"""staged pairs: a day being staged commits its requests' pairs first (`rollup_staged_pairs`,
one row per request and (model, provider) it called), and readers take a request rollup's
rows from them until its twin is summed from them and committed (`rollup_staged_paired` lists
the day's rollups whose twins are not) (`app.warehouse.tables_staged`)

UNLOGGED on PostgreSQL, as the other staged tables: a crash empties them all together.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 08:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
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
        sa.Column('hour', sa.Integer(), nullable=True),
        sa.Column('user_id', sa.String(length=256), nullable=True),
        sa.Column('endpoint', sa.String(length=512), nullable=True),
        sa.Column('team', sa.String(length=256), nullable=True),
        sa.Column('model', sa.String(length=256), nullable=True),
        sa.Column('provider', sa.String(length=64), nullable=True),
        sa.Column('pairs', sa.Text(), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=True) for name in _SUMMED),
        sa.Column('is_first', sa.Integer(), nullable=True),
        sa.Column('is_first_provider', sa.Integer(), nullable=True),
        sa.Column('is_first_model', sa.Integer(), nullable=True),
        prefixes=prefixes,
    )
    op.create_table(
        'rollup_staged_paired',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('rollup', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('day', 'rollup', name=op.f('pk_rollup_staged_paired')),
        prefixes=prefixes,
    )


def downgrade() -> None:
    op.drop_table('rollup_staged_paired')
    op.drop_table('rollup_staged_pairs')
