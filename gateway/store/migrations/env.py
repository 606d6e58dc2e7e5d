"""Alembic environment: online migrations only, on the connection ``Database.upgrade`` hands in.

From the CLI, with an ini holding ``[alembic] script_location = gateway.store:migrations``:
``alembic -c that.ini -x url=sqlite:///var/gateway.sqlite3 upgrade head`` builds its own
:class:`Database`, so the SQLite ``BEGIN IMMEDIATE`` and pragmas apply there too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from gateway.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: future migrations rebuild tables in batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from gateway.store.database import Database

    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    database = Database(url)
    try:
        with database.engine.begin() as connection:
            _run(connection)
    finally:
        database.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
