"""gpu costs, pool hours and allocations; api_calls of collector runs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 01:00:00.000000
"""

from alembic import op
import sqlalchemy as sa
import app.warehouse.types


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gpu_allocations',
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('pool', sa.String(length=128), nullable=False),
    sa.Column('hour', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('weight', sa.BigInteger(), nullable=False),
    sa.Column('gpu_cost_nanousd', sa.BigInteger(), nullable=False),
    sa.Column('computed_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('trace_id', 'span_id', name=op.f('pk_gpu_allocations'))
    )
    with op.batch_alter_table('gpu_allocations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gpu_allocations_hour'), ['hour'], unique=False)
        batch_op.create_index(batch_op.f('ix_gpu_allocations_pool_hour'), ['pool', 'hour'], unique=False)

    op.create_table('gpu_costs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('source_key', sa.String(length=256), nullable=False),
    sa.Column('slice_key', sa.String(length=32), nullable=False),
    sa.Column('period_start', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('period_end', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('charge_category', sa.String(length=32), nullable=False),
    sa.Column('instance_type', sa.String(length=64), nullable=True),
    sa.Column('resource_id', sa.String(length=512), nullable=True),
    sa.Column('namespace', sa.String(length=256), nullable=True),
    sa.Column('tags', sa.Text(), nullable=True),
    sa.Column('description', sa.String(length=512), nullable=True),
    sa.Column('usage_milli', sa.BigInteger(), nullable=True),
    sa.Column('usage_unit', sa.String(length=32), nullable=True),
    sa.Column('amount_nano', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('estimated', sa.Boolean(), nullable=False),
    sa.Column('efficiency_permille', sa.Integer(), nullable=True),
    sa.Column('fetched_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gpu_costs'))
    )
    with op.batch_alter_table('gpu_costs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gpu_costs_period_start'), ['period_start'], unique=False)
        batch_op.create_index(batch_op.f('ix_gpu_costs_source_source_key_slice_key'), ['source', 'source_key', 'slice_key'], unique=False)

    op.create_table('gpu_pool_hours',
    sa.Column('pool', sa.String(length=128), nullable=False),
    sa.Column('hour', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('cost_nanousd', sa.BigInteger(), nullable=False),
    sa.Column('credits_nanousd', sa.BigInteger(), nullable=False),
    sa.Column('allocated_nanousd', sa.BigInteger(), nullable=False),
    sa.Column('idle_nanousd', sa.BigInteger(), nullable=False),
    sa.Column('calls', sa.Integer(), nullable=False),
    sa.Column('weight', sa.BigInteger(), nullable=False),
    sa.Column('capacity', sa.BigInteger(), nullable=True),
    sa.Column('usage_milli', sa.BigInteger(), nullable=True),
    sa.Column('computed_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('pool', 'hour', name=op.f('pk_gpu_pool_hours'))
    )
    with op.batch_alter_table('gpu_pool_hours', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gpu_pool_hours_hour'), ['hour'], unique=False)

    with op.batch_alter_table('collector_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_calls', sa.Integer(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('collector_runs', schema=None) as batch_op:
        batch_op.drop_column('api_calls')

    with op.batch_alter_table('gpu_pool_hours', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gpu_pool_hours_hour'))

    op.drop_table('gpu_pool_hours')
    with op.batch_alter_table('gpu_costs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gpu_costs_source_source_key_slice_key'))
        batch_op.drop_index(batch_op.f('ix_gpu_costs_period_start'))

    op.drop_table('gpu_costs')
    with op.batch_alter_table('gpu_allocations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gpu_allocations_pool_hour'))
        batch_op.drop_index(batch_op.f('ix_gpu_allocations_hour'))

    op.drop_table('gpu_allocations')
