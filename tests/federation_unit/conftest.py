"""One instance of a network of gateways in this process, on both backends (tests/support/federation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.clock import Clock
from support.federation import B_DEPARTMENT, COMMUNE, COMMUNE_2, MINISTRY, T0, add_agencies, exchange_service

from gateway.exchange.service import ExchangeService
from gateway.federation.service import FederationService
from gateway.store.database import Database


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def province(database: Database, tmp_path: Path, clock: Clock) -> ExchangeService:
    """Instance HA (provincial): the two communes live here, the ministry and B's department elsewhere."""
    add_agencies(database, {COMMUNE: None, COMMUNE_2: "HA", MINISTRY: "national", B_DEPARTMENT: "HB"})
    return exchange_service(database, tmp_path, clock, instance_id="HA", role="provincial")


@pytest.fixture
def province_b(database: Database, tmp_path: Path, clock: Clock) -> FederationService:
    """Instance HB receiving what the national instance relays."""
    add_agencies(database, {COMMUNE: "national", B_DEPARTMENT: None})
    return FederationService(exchange_service(database, tmp_path, clock, instance_id="HB", role="provincial"))
