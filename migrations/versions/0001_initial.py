"""initial warehouse: requests, llm_calls, collector runs, checkpoints

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 00:58:33.419992
"""

from alembic import op
import sqlalchemy as sa
import app.warehouse.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('checkpoints',
    sa.Column('collector', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=512), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('collector', 'source', name=op.f('pk_checkpoints'))
    )
    op.create_table('collector_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('collector', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=512), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('finished_at', app.warehouse.types.UtcDateTime(), nullable=True),
    sa.Column('window_start', app.warehouse.types.UtcDateTime(), nullable=True),
    sa.Column('window_end', app.warehouse.types.UtcDateTime(), nullable=True),
    sa.Column('rows_loaded', sa.Integer(), nullable=False),
    sa.Column('rows_rejected', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collector_runs'))
    )
    with op.batch_alter_table('collector_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collector_runs_collector_started_at'), ['collector', 'started_at'], unique=False)

    op.create_table('llm_calls',
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('started_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('response_model', sa.String(length=256), nullable=True),
    sa.Column('priced_model', sa.String(length=256), nullable=True),
    sa.Column('operation', sa.String(length=64), nullable=True),
    sa.Column('family', sa.String(length=32), nullable=False),
    sa.Column('input_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_read_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_write_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=False),
    sa.Column('reasoning_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cost_nanousd', sa.BigInteger(), nullable=True),
    sa.Column('price_source', sa.String(length=32), nullable=False),
    sa.Column('ingested_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('trace_id', 'span_id', name=op.f('pk_llm_calls'))
    )
    with op.batch_alter_table('llm_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_llm_calls_model_started_at'), ['model', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_llm_calls_provider_started_at'), ['provider', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_llm_calls_started_at'), ['started_at'], unique=False)

    op.create_table('requests',
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('started_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.Column('root_span_id', sa.String(length=16), nullable=True),
    sa.Column('root_key', sa.String(length=48), nullable=False),
    sa.Column('endpoint', sa.String(length=512), nullable=False),
    sa.Column('service', sa.String(length=256), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.String(length=256), nullable=True),
    sa.Column('user_key', sa.String(length=48), nullable=True),
    sa.Column('team', sa.String(length=256), nullable=True),
    sa.Column('team_key', sa.String(length=48), nullable=True),
    sa.Column('updated_at', app.warehouse.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('trace_id', name=op.f('pk_requests'))
    )
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_requests_endpoint_started_at'), ['endpoint', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_requests_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_requests_team_started_at'), ['team', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_requests_user_id_started_at'), ['user_id', 'started_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requests_user_id_started_at'))
        batch_op.drop_index(batch_op.f('ix_requests_team_started_at'))
        batch_op.drop_index(batch_op.f('ix_requests_started_at'))
        batch_op.drop_index(batch_op.f('ix_requests_endpoint_started_at'))

    op.drop_table('requests')
    with op.batch_alter_table('llm_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_llm_calls_started_at'))
        batch_op.drop_index(batch_op.f('ix_llm_calls_provider_started_at'))
        batch_op.drop_index(batch_op.f('ix_llm_calls_model_started_at'))

    op.drop_table('llm_calls')
    with op.batch_alter_table('collector_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collector_runs_collector_started_at'))

    op.drop_table('collector_runs')
    op.drop_table('checkpoints')
