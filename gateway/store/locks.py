"""Singleton background work: at most one process per instance runs a named job.

On PostgreSQL the lock is a session-level ``pg_try_advisory_lock`` held on a connection kept
open for as long as the job runs, so several nodes sharing one database elect one runner; on
SQLite (one machine by construction) it is ``fcntl.flock`` on a file in the data directory. Both
are released by the operating system or the server when the holder dies, even by SIGKILL, so a
crashed relay never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from gateway.store.database import Database


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (PostgreSQL keys are bigint)."""
    digest = hashlib.sha256(f"edxml-gateway:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def singleton(db: Database, name: str, lock_dir: Path) -> Iterator[bool]:
    """Try to become the one holder of ``name``; yields True when this process holds it.

    Never blocks: a caller that gets False decides whether to wait and retry or to give up.
    """
    if db.dialect_name == "postgresql":
        with _advisory(db, name) as held:
            yield held
    else:
        with _flock(lock_dir / f"{name}.lock") as held:
            yield held


@contextmanager
def _advisory(db: Database, name: str) -> Iterator[bool]:
    key = lock_key(name)
    connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        try:
            yield held
        finally:
            if held:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        connection.close()


@contextmanager
def _flock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
