"""DDL that only PostgreSQL runs, for the migrations in gateway/store/migrations/versions/.

Stored functions (the audit chain's append, its lock and head) exist on PostgreSQL only: on SQLite
the gateway does the same work in Python, so those migrations change nothing there.
"""

from __future__ import annotations

from alembic import op


def on_postgresql(*statements: str) -> None:
    """Run each statement, in order, when migrating a PostgreSQL database; do nothing on SQLite."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in statements:
            op.execute(statement)
