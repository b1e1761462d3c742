"""billing

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 02:17:40.965288
"""

from alembic import op
import sqlalchemy as sa
import app.warehouse.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('billed_costs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('line_item', sa.String(length=256), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=True),
    sa.Column('model_raw', sa.String(length=256), nullable=True),
    sa.Column('cost_type', sa.String(length=64), nullable=True),
    sa.Column('token_type', sa.String(length=64), nullable=True),
    sa.Column('project', sa.String(length=128), nullable=True),
    sa.Column('amount_nano', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('fetched_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billed_costs'))
    )
    with op.batch_alter_table('billed_costs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billed_costs_day_model'), ['day', 'model'], unique=False)
        batch_op.create_index(batch_op.f('ix_billed_costs_provider_day'), ['provider', 'day'], unique=False)

    op.create_table('billed_usage',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('bucket_start', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('bucket_width', sa.String(length=8), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=True),
    sa.Column('model_raw', sa.String(length=256), nullable=True),
    sa.Column('project', sa.String(length=128), nullable=True),
    sa.Column('api_key_id', sa.String(length=128), nullable=True),
    sa.Column('input_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_read_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_write_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=True),
    sa.Column('fetched_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billed_usage'))
    )
    with op.batch_alter_table('billed_usage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billed_usage_provider_bucket_start'), ['provider', 'bucket_start'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('billed_usage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billed_usage_provider_bucket_start'))

    op.drop_table('billed_usage')
    with op.batch_alter_table('billed_costs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billed_costs_provider_day'))
        batch_op.drop_index(batch_op.f('ix_billed_costs_day_model'))

    op.drop_table('billed_costs')
