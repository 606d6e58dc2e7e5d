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
