"""The gateway's WSGI application on a fresh SQLite store with the small test directory, called in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.live import seed_directory

from gateway.app import Router, create_app
from gateway.config import Settings
from gateway.store.database import Database


@pytest.fixture
def app(tmp_path: Path, sqlite_url: str) -> Iterator[Router]:
    db = Database(sqlite_url)
    db.upgrade()
    seed_directory(db)
    db.dispose()
    router = create_app(Settings(data_dir=tmp_path / "var", database_url=sqlite_url))
    try:
        yield router
    finally:
        router.gateway.db.dispose()
