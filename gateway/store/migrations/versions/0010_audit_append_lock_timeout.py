"""PostgreSQL: the audit chain's append bounds its own lock waits.

Revision ID: 0010_audit_append_lock_timeout
Revises: 0009_agencies_changed
Create Date: 2026-12-06

A gevent worker waits for the connection that holds the audit chain's lock without yielding, from the
append to the end of its transaction (gateway/store/blocking.py): the lock is then released as soon as
the server answers, instead of when the worker next gets round to that request. A lock wait in that
section that only another request of the same worker could end would then never end, so the append
now sets ``lock_timeout`` for the rest of its transaction (``set_config(..., true)``) before it takes
the lock: such a wait fails after ``lock_wait_ms`` (SQLSTATE 55P03, which the gateway answers as
"busy, retry"; nothing is stored) and the worker goes on. The new function takes the timeout as its
second argument, sets it, and calls migration 0007's, which does the append (one definition of how
the chain is computed) and stays for nodes not yet upgraded during a rolling upgrade, as 0002's did;
PostgreSQL tells the two apart by their arguments.
"""

from __future__ import annotations

from gateway.store.ddl import on_postgresql

revision: str = "0010_audit_append_lock_timeout"
down_revision: str | None = "0009_agencies_changed"
branch_labels: str | None = None
depends_on: str | None = None

SIGNATURE = "bigint, integer, timestamptz, text[], text[], text[], text[], text[]"
FUNCTION = """
CREATE OR REPLACE FUNCTION gateway_audit_append(
    lock_key bigint, lock_wait_ms integer, entry_at timestamptz, actors text[], actions text[],
    document_ids text[], details text[], records text[]
) RETURNS TABLE (entry_id integer, entry_prev_hash varchar, entry_hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('lock_timeout', lock_wait_ms::text, true);
    RETURN QUERY SELECT * FROM gateway_audit_append(
        lock_key, entry_at, actors, actions, document_ids, details, records
    );
END
$$
"""


def upgrade() -> None:
    on_postgresql(FUNCTION)


def downgrade() -> None:
    on_postgresql(f"DROP FUNCTION IF EXISTS gateway_audit_append({SIGNATURE})")
