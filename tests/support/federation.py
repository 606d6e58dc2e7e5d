"""One gateway instance of a network of gateways, in this process: its directory, its exchange
service on the test database, the header of a consignment arriving from another instance, and a
stand-in for the upstream's ``/relay`` endpoint (the real multi-process network is tests/federation/)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.config import Settings
from gateway.exchange.credentials import hash_secret
from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService
from gateway.federation.model import ConsignmentHeader, DirectoryEntry
from gateway.federation.service import FederationService
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, Credential
from support.clock import Clock
from support.letters import official_letter
from support.staging import stage

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
COMMUNE, COMMUNE_2, MINISTRY, B_DEPARTMENT = "000.46.24.H41", "000.47.24.H41", "000.00.00.G01", "000.00.01.H14"


def add_agencies(database: Database, homes: dict[str, str | None]) -> None:
    """Agencies with the given home instances (None = served here), each with the credential ``s-<code>``."""
    with database.transaction() as session:
        for code, home in homes.items():
            agency = Agency(code=code, name=f"Cơ quan {code}", level=1, created_at=T0, home_instance=home)
            session.add(agency)
            session.flush()
            session.add(Credential(agency_id=agency.id, secret_hash=hash_secret(f"s-{code}"), created_at=T0))


def exchange_service(database: Database, tmp_path: Path, clock: Clock, **settings: object) -> ExchangeService:
    """The exchange service of one instance: three relay attempts 10 s apart unless ``settings`` say otherwise."""
    values: dict[str, object] = dict(
        data_dir=tmp_path, database_url=str(database.url), relay_max_attempts=3, relay_backoff_seconds=10
    )
    values.update(settings)
    return ExchangeService(database, BlobStore(tmp_path / "blobs"), Settings(**values), clock=clock)  # type: ignore[arg-type]


def caller(service: ExchangeService, code: str) -> Caller:
    """The agency ``code`` logged in with the credential :func:`add_agencies` gave it."""
    return service.authenticate(code, f"s-{code}")


def consignment_header(edxml: bytes, **changes: object) -> ConsignmentHeader:
    """A document from HA's commune to HB's department as the national instance relays it, with ``changes``."""
    header = ConsignmentHeader(
        consignment_id=str(uuid.uuid4()),
        kind="document",
        origin_instance="HA",
        origin_document_id=str(uuid.uuid4()),
        sender_code=COMMUNE,
        recipients=(B_DEPARTMENT,),
        payload_sha256=hashlib.sha256(edxml).hexdigest(),
        payload_size=len(edxml),
        hop_count=2,
        path=("HA", "national"),
    )
    return replace(header, **changes)


def hub_with_a_consignment_never_acknowledged(database: Database, tmp_path: Path, clock: Clock) -> FederationService:
    """The national instance holding HA's document for HB, leased by HB on every attempt and never acknowledged."""
    add_agencies(database, {COMMUNE: "HA", B_DEPARTMENT: "HB"})
    hub = FederationService(exchange_service(database, tmp_path, clock, instance_id="national"))
    edxml = official_letter(COMMUNE, [B_DEPARTMENT])
    hub.receive("HA", consignment_header(edxml, path=("HA",), hop_count=1), stage(hub.exchange, edxml))
    for _ in range(3):
        assert len(hub.pull("HB", 10)) == 1, "HB pulls it but never acknowledges"
        clock.now += timedelta(minutes=5)
    return hub


class FakeUpstream:
    """Stands in for the national instance's /relay: answers pushes as told (an exception is raised),
    serves directory ``pages`` in turn, and lets the relay pull, fetch and acknowledge ``waiting``."""

    def __init__(self, answers: list[object] | None = None) -> None:
        self.answers = answers if answers is not None else []
        self.pushed: list[str] = []
        self.pages: list[tuple[int, list[DirectoryEntry]]] = []
        self.asked_since: list[int] = []
        self.waiting: dict[str, tuple[ConsignmentHeader, bytes]] = {}
        self.fetched: list[str] = []
        self.acknowledged: list[str] = []

    def push(self, header: ConsignmentHeader, payload: bytes) -> tuple[str, bool]:
        self.pushed.append(header.consignment_id)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return header.consignment_id, bool(answer)

    def register(self, entries: Sequence[DirectoryEntry]) -> int:
        return len(entries)

    def directory(self, since: int) -> tuple[int, list[DirectoryEntry]]:
        self.asked_since.append(since)
        return self.pages.pop(0) if self.pages else (since, [])

    def pull(self, max_items: int) -> list[ConsignmentHeader]:
        return [header for header, _ in self.waiting.values()][:max_items]

    def fetch(self, consignment_id: str) -> tuple[ConsignmentHeader, bytes]:
        self.fetched.append(consignment_id)
        return self.waiting[consignment_id]

    def acknowledge(self, consignment_id: str) -> bool:
        del self.waiting[consignment_id]
        self.acknowledged.append(consignment_id)
        return True
