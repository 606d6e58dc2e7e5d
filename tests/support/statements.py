"""Every SQL statement an engine sends inside a block: round trips are what tests count, not seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine

T = TypeVar("T")


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent through ``engine`` inside the block, whitespace folded (SQLite's BEGIN included)."""
    with _recording(engine, lambda _cursor, statement, _parameters: statement) as executed:
        yield executed


@contextmanager
def with_parameters(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent inside the block with its parameters as the driver got them (to EXPLAIN it)."""
    with _recording(engine, lambda _cursor, statement, parameters: (statement, parameters)) as executed:
        yield executed


@contextmanager
def pipelined(engine: Engine) -> Iterator[list[tuple[str, bool]]]:
    """PostgreSQL: each statement sent inside the block, and whether it went out in a psycopg pipeline.

    The statements of one pipeline share a round trip (consecutive pipelined statements may still
    belong to two pipelines); every other statement is a round trip of its own.
    """

    def in_pipeline(cursor: object, statement: str, _parameters: object) -> tuple[str, bool]:
        status = getattr(getattr(cursor, "connection", None), "pgconn", None)
        return statement, bool(status is not None and status.pipeline_status)

    with _recording(engine, in_pipeline) as executed:
        yield executed


@contextmanager
def _recording(engine: Engine, describe: Callable[[object, str, Any], T]) -> Iterator[list[T]]:
    """What ``describe`` says of each statement (whitespace folded), its cursor and parameters, inside the block."""
    executed: list[T] = []

    def record(_conn: object, cursor: object, statement: str, parameters: Any, *_args: object) -> None:
        executed.append(describe(cursor, " ".join(statement.split()), parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(engine, "before_cursor_execute", record)
