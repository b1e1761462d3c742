"""rollups carry the trued-up token cost (`trued_cost_nanousd`) and the calls it scaled
(`trued_up_calls`), so `pricing.true_up` reads the rollups instead of every call

Existing rows get their estimate as trued-up cost (right wherever no factor applies), and the
request days of calls that have a true-up factor are marked dirty, so the next refresh rebuilds
them with their factors (until then, reports read the base tables for those days).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 00:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_TABLES = (
    'rollup_daily', 'rollup_daily_calls', 'rollup_daily_users', 'rollup_daily_user_totals',
    'rollup_daily_user_calls', 'rollup_daily_set_calls', 'rollup_daily_user_set_calls',
)
_COLUMNS = ('trued_cost_nanousd', 'trued_up_calls')
_MARK = """
INSERT INTO rollup_dirty (day)
SELECT DISTINCT date(r.started_at)
FROM true_up_factors f
JOIN llm_calls c ON c.provider = f.provider
    AND coalesce(c.response_model, c.model) = f.model
    AND c.started_at >= f.starts_at AND c.started_at < f.ends_at
JOIN requests r ON r.trace_id = c.trace_id
"""


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for column in _COLUMNS:
                batch.add_column(
                    sa.Column(column, sa.BigInteger(), nullable=False, server_default='0')
                )
        op.execute(f'UPDATE {table} SET trued_cost_nanousd = token_cost_nanousd')
    op.execute(_MARK)


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for column in _COLUMNS:
                batch.drop_column(column)
