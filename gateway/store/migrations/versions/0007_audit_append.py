"""PostgreSQL: append to the audit chain in one statement.

Revision ID: 0007_audit_append
Revises: 0006_certification
Create Date: 2026-12-03

Migration 0002 took the chain's lock and read its head in one round trip; the INSERT that followed
was a second. The entry's hash is ``sha256(prev_hash + record)``, where ``record`` (the canonical
JSON of what the entry says) does not depend on the head, so the gateway computes ``record`` and
this function does the rest in the database: lock, read the head, hash, insert, in record order.
It returns each entry's id, prev_hash and hash, and the gateway recomputes the hash before it
commits (gateway/store/audit.py), so a database that hashed differently writes nothing. Every send,
fetch, acknowledgement and status report appends, so this is a round trip off each
(docs/performance.md).
"""

from __future__ import annotations

from gateway.store.ddl import on_postgresql

revision: str = "0007_audit_append"
down_revision: str | None = "0006_certification"
branch_labels: str | None = None
depends_on: str | None = None

SIGNATURE = "bigint, timestamptz, text[], text[], text[], text[], text[]"
FUNCTION = """
CREATE OR REPLACE FUNCTION gateway_audit_append(
    lock_key bigint, entry_at timestamptz, actors text[], actions text[], document_ids text[],
    details text[], records text[]
) RETURNS TABLE (entry_id integer, entry_prev_hash varchar, entry_hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head varchar;
    i integer;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    head := coalesce((SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), repeat('0', 64));
    FOR i IN 1 .. coalesce(array_length(records, 1), 0) LOOP
        entry_prev_hash := head;
        entry_hash := encode(sha256(convert_to(head || records[i], 'UTF8')), 'hex');
        INSERT INTO audit_log (at, actor, action, document_id, detail, prev_hash, hash)
        VALUES (entry_at, actors[i], actions[i], document_ids[i], details[i], head, entry_hash)
        RETURNING id INTO entry_id;
        head := entry_hash;
        RETURN NEXT;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    on_postgresql(FUNCTION)


def downgrade() -> None:
    on_postgresql(f"DROP FUNCTION IF EXISTS gateway_audit_append({SIGNATURE})")
