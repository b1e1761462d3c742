"""PostgreSQL's trigger marking the hour a request leaves stands aside for a batch that patches
its days' rollup rows itself (`app.rollups.patch`): such a batch reads its requests' pairs
before and after the write, the hours they leave included, and sets `spendguard.rollup_patch`
for its load. Every other write of `requests` marks as before.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 17:30:00.000000
"""

from alembic import op


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION rollup_request_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('spendguard.rollup_patch', true) = 'on' THEN
        RETURN NULL;
    END IF;
    INSERT INTO rollup_dirty (day, hour)
    VALUES (OLD.started_at::date, extract(hour FROM OLD.started_at)::integer);
    RETURN NULL;
END
$$
"""
_OLD_FUNCTION = """
CREATE OR REPLACE FUNCTION rollup_request_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_dirty (day, hour)
    VALUES (OLD.started_at::date, extract(hour FROM OLD.started_at)::integer);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_OLD_FUNCTION)
