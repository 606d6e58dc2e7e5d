"""Count every change of the agencies table, in the database itself.

Revision ID: 0009_agencies_changed
Revises: 0008_drop_sender_index
Create Date: 2026-12-04

A send's addressees are looked up in ``agencies`` on every call. Each worker keeps the rows it
already read (gateway/exchange/addressees.py) and reuses them while the ``agencies_changed``
counter in ``relay_state`` keeps the value it had when they were read; authentication reads the
counter in the statement it runs anyway. The counter is bumped by triggers, not by the code that
writes agencies, so no writer can forget it: the shipped directory's load, the admin commands,
certification, the directory pulled from another tier, and an operator's own SQL all count.
PostgreSQL bumps it once per statement, SQLite (which has only row triggers) once per row.
"""

from __future__ import annotations

from alembic import op

revision: str = "0009_agencies_changed"
down_revision: str | None = "0008_drop_sender_index"
branch_labels: str | None = None
depends_on: str | None = None

COUNTER = "agencies_changed"
_BUMP = f"UPDATE relay_state SET value = value + 1 WHERE name = '{COUNTER}'"
_POSTGRESQL = (
    f"""
CREATE OR REPLACE FUNCTION gateway_agencies_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    {_BUMP};
    RETURN NULL;
END
$$
""",
    "CREATE TRIGGER agencies_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON agencies "
    "FOR EACH STATEMENT EXECUTE FUNCTION gateway_agencies_changed()",
)
_SQLITE_EVENTS = ("insert", "update", "delete")


def upgrade() -> None:
    op.execute(f"INSERT INTO relay_state (name, value) VALUES ('{COUNTER}', 0)")
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRESQL:
            op.execute(statement)
        return
    for event in _SQLITE_EVENTS:
        op.execute(f"CREATE TRIGGER agencies_changed_{event} AFTER {event.upper()} ON agencies BEGIN {_BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS agencies_changed ON agencies")
        op.execute("DROP FUNCTION IF EXISTS gateway_agencies_changed()")
    else:
        for event in _SQLITE_EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS agencies_changed_{event}")
    op.execute(f"DELETE FROM relay_state WHERE name = '{COUNTER}'")
