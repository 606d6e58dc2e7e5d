"""PostgreSQL: take the audit lock and read the chain head in one round trip.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Appending to the audit chain needs the head hash read *after* the advisory lock is held, which
in READ COMMITTED means a separate statement (a statement's snapshot is taken when it starts).
A VOLATILE function takes a fresh snapshot for each query it runs, so taking the lock and then
reading the head inside one function keeps the order and saves a round trip per append.
"""

from __future__ import annotations

from gateway.store.ddl import on_postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

FUNCTION = """
CREATE OR REPLACE FUNCTION gateway_audit_lock_head(lock_key bigint) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1);
END
$$
"""


def upgrade() -> None:
    on_postgresql(FUNCTION)


def downgrade() -> None:
    on_postgresql("DROP FUNCTION IF EXISTS gateway_audit_lock_head(bigint)")
