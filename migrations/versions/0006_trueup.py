"""true-up factors (billed / estimated per provider, traced model and UTC day)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 03:10:00.000000
"""

from alembic import op
import sqlalchemy as sa
import app.warehouse.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('true_up_factors',
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('starts_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('ends_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('billed_model', sa.String(length=256), nullable=False),
    sa.Column('billed_nano', sa.BigInteger(), nullable=False),
    sa.Column('estimated_nano', sa.BigInteger(), nullable=False),
    sa.Column('factor_num', sa.BigInteger(), nullable=False),
    sa.Column('factor_den', sa.BigInteger(), nullable=False),
    sa.Column('carrier_trace_id', sa.String(length=32), nullable=True),
    sa.Column('carrier_span_id', sa.String(length=16), nullable=True),
    sa.Column('residual_nano', sa.BigInteger(), nullable=False),
    sa.Column('computed_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('provider', 'model', 'day', name=op.f('pk_true_up_factors'))
    )


def downgrade() -> None:
    op.drop_table('true_up_factors')
