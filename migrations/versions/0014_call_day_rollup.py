"""the reconciliation's daily rollup, rollup_call_days: calls per call's UTC day, provider and
served model (response_model, else model), with their tokens, estimate and unpriced count

Filled here from llm_calls in one pass (exact at this moment: no day needs marking, so the
other rollups keep their clean days); from then on, rebuilt with the other rollups of each
dirty day, which load_batch and reprice now mark by the calls' days too.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 03:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_MEASURES = ('llm_calls', 'input_tokens', 'output_tokens', 'cost_nanousd', 'unpriced_calls')
_FILL = """
INSERT INTO rollup_call_days
    (day, provider, model, llm_calls, input_tokens, output_tokens, cost_nanousd, unpriced_calls)
SELECT {day}, provider, coalesce(response_model, model), count(*),
    coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
    coalesce(sum(cost_nanousd), 0), count(*) - count(cost_nanousd)
FROM llm_calls
GROUP BY {day}, provider, coalesce(response_model, model)
"""


def upgrade() -> None:
    op.create_table(
        'rollup_call_days',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('provider', sa.String(length=64), nullable=False),
        sa.Column('model', sa.String(length=256), nullable=False),
        *(sa.Column(n, sa.BigInteger(), nullable=False) for n in _MEASURES),
    )
    op.create_index('ix_rollup_call_days_day', 'rollup_call_days', ['day'])
    pg = op.get_bind().dialect.name == 'postgresql'
    op.execute(_FILL.format(day='started_at::date' if pg else 'date(started_at)'))


def downgrade() -> None:
    op.drop_index('ix_rollup_call_days_day', table_name='rollup_call_days')
    op.drop_table('rollup_call_days')
