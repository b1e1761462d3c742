"""staged pairs indexed by day: on PostgreSQL a staging's deleted pairs stay in the table as
dead rows until a vacuum (after a 90-day rebuild, 18 million rows and 3.5 GB that autovacuum
had not reached), and a staging's DELETE of the day's old pairs, the first statement of its
first commit, scanned all of them (11 s) while pages read the day from the base tables; readers
of the pairs scanned them too. By the index, both read the day's rows alone.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 12:00:00.000000
"""

from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_rollup_staged_pairs_day', 'rollup_staged_pairs', ['day'])


def downgrade() -> None:
    op.drop_index('ix_rollup_staged_pairs_day', table_name='rollup_staged_pairs')
