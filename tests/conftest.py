"""Shared fixtures: database URLs for both backends, an upgraded ``Database``, a ``BlobStore``.

``db_url`` (and so ``database``) runs a test once on SQLite and once on PostgreSQL; the PostgreSQL
run is marked ``postgres`` and skipped when no server answers. Each PostgreSQL test gets its own
freshly created database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url
from support.postgres import libpq_dsn

from gateway.store.blobs import BlobStore
from gateway.store.database import Database

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_SKIP_REASON = "PostgreSQL not reachable at {host}:{port} (set GATEWAY_TEST_PG_URL)"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL in the test's temp dir (the file does not exist yet)."""
    return f"sqlite:///{tmp_path / 'db' / 'gateway.sqlite3'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A SQLAlchemy URL for a new, empty PostgreSQL database, dropped after the test."""
    base = make_url(os.environ.get("GATEWAY_TEST_PG_URL") or DEFAULT_PG_URL)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship with
    maintenance = libpq_dsn(base, "postgres")
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(maintenance, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip(PG_SKIP_REASON.format(host=base.host, port=base.port or 5432))
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once per backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A :class:`Database` migrated to head; disposed after the test."""
    db = Database(db_url)
    db.upgrade()
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def blob_store(tmp_path: Path) -> BlobStore:
    """An empty blob store under the test's temp dir."""
    return BlobStore(tmp_path / "blobs")
