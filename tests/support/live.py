"""A real gateway on a real port for tests, and the small agency directory it is seeded with."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from gateway.app import Router, create_app
from gateway.config import Settings
from gateway.exchange.credentials import hash_secret
from gateway.store.database import Database
from gateway.store.models import Agency, Credential

NS = "urn:edxml-gateway:soap:v1"
VPCP = "000.00.00.G22"
NGHE_AN = "000.00.00.H41"
CAO_BANG = "000.00.00.H14"
HAU_GIANG = "000.00.00.H30"
DISABLED = "000.00.00.H63"

DIRECTORY = [
    (VPCP, "Văn phòng Chính phủ", 1, None, True),
    (NGHE_AN, "Ủy ban nhân dân tỉnh Nghệ An", 1, None, True),
    (CAO_BANG, "Ủy ban nhân dân tỉnh Cao Bằng", 1, None, True),
    (HAU_GIANG, "Ủy ban nhân dân tỉnh Hậu Giang", 1, None, True),
    (DISABLED, "Ủy ban nhân dân tỉnh Yên Bái", 1, None, False),
]


def secret_of(code: str) -> str:
    return f"secret-for-{code}"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class LiveGateway:
    url: str
    settings: Settings
    db: Database

    @property
    def wsdl(self) -> str:
        return f"{self.url}?wsdl"


def seed_directory(db: Database) -> None:
    now = datetime.now(UTC)
    with db.transaction() as session:
        for code, name, level, parent, active in DIRECTORY:
            agency = Agency(code=code, name=name, level=level, parent_code=parent, active=active, created_at=now)
            session.add(agency)
            session.flush()
            session.add(Credential(agency_id=agency.id, secret_hash=hash_secret(secret_of(code)), created_at=now))


@contextmanager
def serving_in_thread(app: Any) -> Iterator[str]:
    """Serve the WSGI ``app`` on a free local port from a daemon thread; yields ``http://127.0.0.1:PORT``."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def serving_store(settings: Settings, seed: Callable[[Database], None]) -> Iterator[tuple[str, Database, Router]]:
    """Migrate the store of ``settings``, ``seed`` it, serve ``create_app(settings)`` on a free port.

    Yields ``(base URL, database, app)``; both database handles are disposed afterwards.
    """
    db = Database(settings.database_url)
    db.upgrade()
    seed(db)
    app = create_app(settings)
    try:
        with serving_in_thread(app) as base:
            yield base, db, app
    finally:
        app.gateway.db.dispose()
        db.dispose()


@contextmanager
def live_gateway_for(settings: Settings) -> Iterator[LiveGateway]:
    """A gateway on the directory above, served on a free port, stopped afterwards."""
    with serving_store(settings, seed_directory) as (base, db, _app):
        yield LiveGateway(f"{base}/soap", settings, db)
