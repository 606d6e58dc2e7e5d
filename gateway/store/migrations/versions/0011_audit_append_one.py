"""PostgreSQL: one audit entry from scalar arguments, checked before it is written.

Revision ID: 0011_audit_append_one
Revises: 0010_audit_append_lock_timeout
Create Date: 2026-12-07

Every send appends exactly one entry. Two changes make that append cheaper (docs/performance.md,
"One entry per send, and its COMMIT in the same round trip"):

- The entry's fields go as scalars: binding five one-element ``text[]`` arrays cost the gateway
  60-150 us of CPU per call more than binding five strings.
- The hash is checked inside the function, before anything is written, so the gateway may send
  its COMMIT in the same round trip instead of waiting to recompute the hashes first. The gateway
  passes ``genesis_probe``, its own ``sha256(GENESIS_HASH + record)``; the function computes the
  same expression with :data:`HASH` and raises (SQLSTATE 22000) when the two differ. The chain
  applies that expression to the real head, so a database that hashes differently still writes
  nothing.

``gateway_audit_hash`` is the chain's one definition of a hash in SQL: migration 0007's function
is redefined here to use it (same arguments, same results), and this migration's function calls
0010's for the append itself (the lock timeout, the lock, the head, the INSERT). PostgreSQL tells
the overloads apart by their arguments, so nodes not yet upgraded keep calling the older ones.
"""

from __future__ import annotations

from importlib import import_module

from gateway.store.ddl import on_postgresql

revision: str = "0011_audit_append_one"
down_revision: str | None = "0010_audit_append_lock_timeout"
branch_labels: str | None = None
depends_on: str | None = None

HASH = """
CREATE OR REPLACE FUNCTION gateway_audit_hash(prev_hash text, record text) RETURNS varchar
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT encode(sha256(convert_to(prev_hash || record, 'UTF8')), 'hex')
$$
"""

HASH_0007 = "encode(sha256(convert_to(head || records[i], 'UTF8')), 'hex')"


def moved_hash(function: str) -> str:
    """``function`` with migration 0007's hash expression replaced by a call of ``gateway_audit_hash``.

    Refuses a text without that expression: an unchanged function would keep its own hash
    definition beside ``gateway_audit_hash``, and the two could drift apart unnoticed.
    """
    if HASH_0007 not in function:
        raise ValueError("migration 0007's hash expression is not the one migration 0011 moves into gateway_audit_hash")
    return function.replace(HASH_0007, "gateway_audit_hash(head, records[i])")


FUNCTION_0007: str = import_module("gateway.store.migrations.versions.0007_audit_append").FUNCTION
CHAIN_0007 = moved_hash(FUNCTION_0007)
"""Migration 0007's function with its hash expression moved into ``gateway_audit_hash``."""

SIGNATURE = "bigint, integer, timestamptz, text, text, text, text, text, varchar"
FUNCTION = """
CREATE OR REPLACE FUNCTION gateway_audit_append(
    lock_key bigint, lock_wait_ms integer, entry_at timestamptz, actor text, action text,
    document_id text, detail text, record text, genesis_probe varchar
) RETURNS TABLE (entry_id integer, entry_prev_hash varchar, entry_hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF gateway_audit_hash(repeat('0', 64), record) IS DISTINCT FROM genesis_probe THEN
        RAISE EXCEPTION 'the database hashes audit entries differently from the gateway; nothing was written'
            USING ERRCODE = '22000';
    END IF;
    RETURN QUERY SELECT * FROM gateway_audit_append(
        lock_key, lock_wait_ms, entry_at, ARRAY[actor], ARRAY[action], ARRAY[document_id], ARRAY[detail],
        ARRAY[record]
    );
END
$$
"""


def upgrade() -> None:
    on_postgresql(HASH, CHAIN_0007, FUNCTION)


def downgrade() -> None:
    on_postgresql(
        f"DROP FUNCTION IF EXISTS gateway_audit_append({SIGNATURE})",
        FUNCTION_0007,
        "DROP FUNCTION IF EXISTS gateway_audit_hash(text, text)",
    )
