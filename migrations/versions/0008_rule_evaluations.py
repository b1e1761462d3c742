"""each rule's last evaluation: when, how many groups were judged, how many were firing

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 02:30:00.000000
"""

from alembic import op
import sqlalchemy as sa
import app.warehouse.types


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alert_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_evaluated_at', app.warehouse.types.UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_groups', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('last_firing', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('alert_rules', schema=None) as batch_op:
        batch_op.drop_column('last_firing')
        batch_op.drop_column('last_groups')
        batch_op.drop_column('last_evaluated_at')
