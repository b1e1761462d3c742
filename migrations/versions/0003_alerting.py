"""alerting: rules, states, transitions, outbox, audit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 01:52:21.797288
"""

from alembic import op
import sqlalchemy as sa
import app.warehouse.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('notifier', sa.String(length=128), nullable=False),
    sa.Column('alert_key', sa.String(length=160), nullable=False),
    sa.Column('transition_id', sa.Integer(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('next_attempt_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('claimed_until', app.warehouse.types.UtcDateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_http_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('finished_at', app.warehouse.types.UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_outbox')),
    sa.UniqueConstraint('message_id', name=op.f('uq_alert_outbox_message_id'))
    )
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_outbox_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_outbox_status_next_attempt_at'), ['status', 'next_attempt_at'], unique=False)

    op.create_table('alert_rules',
    sa.Column('rule_id', sa.String(length=64), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=False),
    sa.Column('config_json', sa.Text(), nullable=False),
    sa.Column('updated_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('rule_id', name=op.f('pk_alert_rules'))
    )
    op.create_table('alert_states',
    sa.Column('rule_id', sa.String(length=64), nullable=False),
    sa.Column('group_id', sa.String(length=64), nullable=False),
    sa.Column('group_json', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('since', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('notified_at', app.warehouse.types.UtcDateTime(), nullable=True),
    sa.Column('silenced_at', app.warehouse.types.UtcDateTime(), nullable=True),
    sa.Column('updated_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('rule_id', 'group_id', name=op.f('pk_alert_states'))
    )
    op.create_table('alert_transitions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('rule_id', sa.String(length=64), nullable=False),
    sa.Column('group_json', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('delivery', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=True),
    sa.Column('compared', sa.String(length=64), nullable=True),
    sa.Column('threshold', sa.String(length=64), nullable=True),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('window_start', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('window_end', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('actions', sa.Text(), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_transitions'))
    )
    with op.batch_alter_table('alert_transitions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_transitions_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_transitions_rule_id_at'), ['rule_id', 'at'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('rule_id', sa.String(length=64), nullable=True),
    sa.Column('group_json', sa.Text(), nullable=True),
    sa.Column('notifier', sa.String(length=128), nullable=True),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('notifier_endpoints_disabled',
    sa.Column('notifier', sa.String(length=128), nullable=False),
    sa.Column('target_hash', sa.String(length=64), nullable=False),
    sa.Column('disabled_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('notifier', 'target_hash', name=op.f('pk_notifier_endpoints_disabled'))
    )


def downgrade() -> None:
    op.drop_table('notifier_endpoints_disabled')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
    with op.batch_alter_table('alert_transitions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_transitions_rule_id_at'))
        batch_op.drop_index(batch_op.f('ix_alert_transitions_at'))

    op.drop_table('alert_transitions')
    op.drop_table('alert_states')
    op.drop_table('alert_rules')
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_outbox_status_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_alert_outbox_created_at'))

    op.drop_table('alert_outbox')
