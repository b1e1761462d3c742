"""kill switches (and the one-row version counter API replicas poll)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 02:23:25.930930
"""

from alembic import op
import sqlalchemy as sa
import app.warehouse.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kill_switch_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kill_switch_version'))
    )
    version = sa.table('kill_switch_version', sa.column('id', sa.Integer()), sa.column('version', sa.BigInteger()))
    op.bulk_insert(version, [{'id': 1, 'version': 0}])
    op.create_table('kill_switches',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('endpoint', sa.String(length=1024), nullable=True),
    sa.Column('model', sa.String(length=1024), nullable=True),
    sa.Column('user_id', sa.String(length=1024), nullable=True),
    sa.Column('team', sa.String(length=1024), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=256), nullable=False),
    sa.Column('rule_id', sa.String(length=64), nullable=True),
    sa.Column('group_json', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('created_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('expires_at', app.warehouse.types.UtcDateTime(), nullable=True),
    sa.Column('updated_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('updated_by', sa.String(length=256), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kill_switches'))
    )
    with op.batch_alter_table('kill_switches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_kill_switches_rule_id_state'), ['rule_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_kill_switches_state'), ['state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('kill_switches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_kill_switches_state'))
        batch_op.drop_index(batch_op.f('ix_kill_switches_rule_id_state'))

    op.drop_table('kill_switches')
    op.drop_table('kill_switch_version')
