"""A real gateway on a real port, and zeep clients for the agencies of a small directory.

Each test gets its own gateway (fresh database, fresh blob store) served by a threaded
wsgiref server in this process, once on SQLite and once on PostgreSQL (``db_url``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import zeep
from zeep.transports import Transport

from gateway.app import create_app
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


@pytest.fixture
def gateway_settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=db_url, lease_seconds=60)


@pytest.fixture
def live_gateway(gateway_settings: Settings) -> Iterator[LiveGateway]:
    db = Database(gateway_settings.database_url)
    db.upgrade()
    seed_directory(db)
    app = create_app(gateway_settings)
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveGateway(f"http://127.0.0.1:{server.server_port}/soap", gateway_settings, db)
    finally:
        server.shutdown()
        server.server_close()
        app.gateway.db.dispose()
        db.dispose()


ClientFactory = Callable[..., zeep.Client]


@pytest.fixture
def client_for(live_gateway: LiveGateway) -> ClientFactory:
    """``client_for(code)``: a zeep client authenticated as agency ``code`` (secret overridable)."""
    transport = Transport(timeout=60, operation_timeout=120)
    settings = zeep.Settings(xml_huge_tree=True)
    base = zeep.Client(live_gateway.wsdl, transport=transport, settings=settings)

    def factory(code: str, secret: str | None = None) -> zeep.Client:
        client = zeep.Client(live_gateway.wsdl, transport=transport, settings=settings)
        header = base.get_element(f"{{{NS}}}AuthHeader")(agencyCode=code, secret=secret or secret_of(code))
        client.set_default_soapheaders([header])
        return client

    return factory
