"""Fixtures: a real gateway per test (fresh database and blob store, SQLite and PostgreSQL via
``db_url``) and zeep clients for the agencies of its small directory (tests/support/live.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zeep
from support.live import NS, LiveGateway, live_gateway_for, secret_of
from zeep.transports import Transport

from gateway.config import Settings


@pytest.fixture
def gateway_settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=db_url, lease_seconds=60)


@pytest.fixture
def live_gateway(gateway_settings: Settings) -> Iterator[LiveGateway]:
    with live_gateway_for(gateway_settings) as gateway:
        yield gateway


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
