"""Fixtures for the exchange service without HTTP: four agencies, a hand-moved clock, callers."""

from __future__ import annotations

from pathlib import Path

import pytest
from exchange_support import RECIPIENT, SENDER, STRANGER, T0, THIRD, Callers, Clock

from gateway.config import Settings
from gateway.exchange.credentials import hash_secret
from gateway.exchange.service import ExchangeService
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, Credential


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(database: Database, tmp_path: Path, clock: Clock) -> ExchangeService:
    with database.transaction() as session:
        for code in (SENDER, RECIPIENT, THIRD, STRANGER):
            agency = Agency(code=code, name=f"Cơ quan {code}", level=1, created_at=T0)
            session.add(agency)
            session.flush()
            session.add(Credential(agency_id=agency.id, secret_hash=hash_secret(f"s-{code}"), created_at=T0))
    settings = Settings(data_dir=tmp_path, database_url=str(database.url), lease_seconds=300)
    return ExchangeService(database, BlobStore(tmp_path / "blobs"), settings, clock=clock)


@pytest.fixture
def callers(service: ExchangeService) -> Callers:
    return Callers(*(service.authenticate(code, f"s-{code}") for code in (SENDER, RECIPIENT, THIRD, STRANGER)))
