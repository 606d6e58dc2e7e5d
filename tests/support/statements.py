"""Every SQL statement an engine sends inside a block: round trips are what tests count, not seconds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent through ``engine`` inside the block, whitespace folded (SQLite's BEGIN included)."""
    executed: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        executed.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def pipelined(engine: Engine) -> Iterator[list[tuple[str, bool]]]:
    """PostgreSQL: each statement sent inside the block, and whether it went out in a psycopg pipeline.

    The statements of one pipeline share a round trip (consecutive pipelined statements may still
    belong to two pipelines); every other statement is a round trip of its own.
    """
    executed: list[tuple[str, bool]] = []

    def record(_conn: object, cursor: object, statement: str, *_args: object) -> None:
        status = getattr(getattr(cursor, "connection", None), "pgconn", None)
        executed.append((" ".join(statement.split()), bool(status is not None and status.pipeline_status)))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(engine, "before_cursor_execute", record)
