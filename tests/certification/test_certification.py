"""Certification runs driven against the exchange service directly: the grade follows behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from support.clock import Clock
from support.letters import official_letter
from support.live import NGHE_AN, seed_directory

from gateway.certification import CertificationInProgress, Certifications
from gateway.certification.script import SANDBOX_CODE
from gateway.config import Settings
from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService
from gateway.reports import CONNECTED, NOT_CONNECTED, REPORTS_STATUS, SENDS_AND_RECEIVES
from gateway.store.blobs import BlobStore
from gateway.store.database import Database


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def exchange(tmp_path: Path, database: Database, clock: Clock) -> Iterator[ExchangeService]:
    seed_directory(database)
    settings = Settings(data_dir=tmp_path / "var", database_url=str(database.url), lease_seconds=60)
    yield ExchangeService(database, BlobStore(tmp_path / "blobs"), settings, clock=clock)


@pytest.fixture
def certifications(exchange: ExchangeService, clock: Clock) -> Certifications:
    return Certifications(exchange, large_bytes=300_000, clock=clock)


class Desk:
    """The agency's software, as scripted as a test needs it to be."""

    def __init__(self, exchange: ExchangeService) -> None:
        self.exchange = exchange
        self.me: Caller = exchange.authenticate(NGHE_AN, f"secret-for-{NGHE_AN}")

    def receive(self, acknowledge: bool = True) -> list[tuple[str, str]]:
        """Pull, fetch (and acknowledge) everything; return (kind, document id) of each item."""
        seen = []
        for item in self.exchange.pending(self.me, 100):
            self.exchange.fetch(self.me, item.item_id)
            if acknowledge:
                self.exchange.acknowledge(self.me, item.item_id)
            seen.append((item.kind, item.document_id, item.subject, item.status_code))
        return seen

    def handle(self, seen: list[tuple[str, str, str, str | None]]) -> None:
        """Do what each test document's instruction asks."""
        for kind, document_id, subject, status in seen:
            if kind == "status" and status == "13":
                self.exchange.update_status(self.me, document_id, "15", "Đồng ý thu hồi")
            elif kind == "document" and "[EDXML-CERTIFY:REJECT]" in subject:
                self.exchange.update_status(self.me, document_id, "02", "Gửi nhầm đơn vị")
            elif kind == "document" and subject.startswith(("[EDXML-CERTIFY:PROCESS]", "[EDXML-CERTIFY:ATTACHMENTS]")):
                for code in ("03", "04", "05", "06"):
                    self.exchange.update_status(self.me, document_id, code, None)

    def send_to_sandbox(self) -> None:
        staged = self.exchange.begin_staging()
        staged.write(official_letter(NGHE_AN, [SANDBOX_CODE], number="31"))
        staged.flush()
        self.exchange.send_document(self.me, staged)
        staged.discard()


def _play(
    certifications: Certifications,
    desk: Desk,
    run_id: str,
    *,
    statuses: bool = True,
    acknowledge: bool = True,
    receive: bool = True,
) -> None:
    for _ in range(4):
        if receive:
            seen = desk.receive(acknowledge)
            if statuses:
                desk.handle(seen)
        certifications.advance(run_id)


def test_an_agency_that_does_everything_earns_the_top_grade(
    certifications: Certifications, exchange: ExchangeService, clock: Clock
) -> None:
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    desk = Desk(exchange)
    desk.send_to_sandbox()
    _play(certifications, desk, run.run_id)

    view = certifications.view(run.run_id)
    assert {c.key: c.state for c in view.checks} == {c.key: "passed" for c in view.checks}, view.checks
    assert view.grade == REPORTS_STATUS and not view.active
    large = next(c for c in view.checks if c.key == "receive:large")
    assert large.evidence["acknowledged_at"] and large.evidence["item_id"]


def test_an_agency_that_never_reports_statuses_sends_and_receives(
    certifications: Certifications, exchange: ExchangeService, clock: Clock
) -> None:
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    desk = Desk(exchange)
    desk.send_to_sandbox()
    _play(certifications, desk, run.run_id, statuses=False)
    assert certifications.view(run.run_id).active
    clock.now += timedelta(minutes=31)

    view = certifications.view(run.run_id)
    assert view.grade == SENDS_AND_RECEIVES and not view.active
    failed = {c.key for c in view.checks if c.state == "failed"}
    assert failed == {"status:process", "status:attachments", "status:reject", "status:recall"}


def test_a_client_that_only_sends_is_connected(
    certifications: Certifications, exchange: ExchangeService, clock: Clock
) -> None:
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    Desk(exchange).send_to_sandbox()
    clock.now += timedelta(minutes=31)
    view = certifications.view(run.run_id)
    assert view.grade == CONNECTED
    assert {c.key for c in view.checks if c.state == "passed"} == {"send"}


def test_a_client_that_never_acknowledges_fails_with_evidence(
    certifications: Certifications, exchange: ExchangeService, clock: Clock
) -> None:
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    desk = Desk(exchange)
    _play(certifications, desk, run.run_id, acknowledge=False, statuses=False)
    clock.now += timedelta(minutes=31)
    view = certifications.view(run.run_id)
    receive = next(c for c in view.checks if c.key == "receive:process")
    assert receive.state == "failed"
    assert receive.evidence["note"] == "fetched but never acknowledged (confirmReceived)"
    assert receive.evidence["fetched_at"] and receive.evidence["acknowledged_at"] is None
    assert view.grade == CONNECTED


def test_an_agency_that_does_nothing_is_not_connected(certifications: Certifications, clock: Clock) -> None:
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    clock.now += timedelta(hours=1)
    assert certifications.view(run.run_id).grade == NOT_CONNECTED


def test_a_second_run_while_one_is_active_is_refused(certifications: Certifications, clock: Clock) -> None:
    first = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    with pytest.raises(CertificationInProgress, match=first.run_id):
        certifications.start(NGHE_AN, "agency", timedelta(minutes=30))
    clock.now += timedelta(hours=1)
    certifications.advance(first.run_id)
    second = certifications.start(NGHE_AN, "agency", timedelta(minutes=30))
    assert [r.run_id for r in certifications.runs(NGHE_AN)] == [second.run_id, first.run_id]


def test_faults_are_kept_only_while_a_run_is_active(certifications: Certifications, clock: Clock) -> None:
    assert not certifications.record_fault(NGHE_AN, "getDocument", "Client.NotFound", "No item")
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    assert certifications.record_fault(NGHE_AN, "getDocument", "Client.NotFound", "No item 'x'")
    [fault] = certifications.view(run.run_id).faults
    assert (fault.operation, fault.code) == ("getDocument", "Client.NotFound")


def test_a_signed_test_document_is_sent_where_signatures_are_configured(
    exchange: ExchangeService, clock: Clock, tmp_path: Path
) -> None:
    from support.certificates import Authority

    from gateway.edxml.signature import verify_signature

    authority = Authority("Root CA of the test exchange")
    key, cert = authority.issue("Hộp cát kiểm thử")
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(authority.pem())
    signing_exchange = ExchangeService(
        exchange.db, exchange.blobs, Settings(data_dir=tmp_path, trusted_certs=bundle), clock=clock
    )
    certifications = Certifications(signing_exchange, large_bytes=1000, clock=clock, signing=(key, cert))
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    assert "receive:signed" in {c.key for c in run.checks}
    desk = Desk(signing_exchange)
    signed = [i for i in signing_exchange.pending(desk.me, 100) if "[EDXML-CERTIFY:SIGNED]" in i.subject]
    assert len(signed) == 1 and signed[0].signer and "Hộp cát kiểm thử" in signed[0].signer
    fetched = signing_exchange.fetch(desk.me, signed[0].item_id)
    assert "Hộp cát kiểm thử" in verify_signature(fetched.path, bundle)


def test_certification_traffic_is_never_counted_in_reports(
    certifications: Certifications, exchange: ExchangeService, clock: Clock
) -> None:
    from gateway import reports

    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    desk = Desk(exchange)
    desk.send_to_sandbox()
    _play(certifications, desk, run.run_id)
    assert certifications.view(run.run_id).grade == REPORTS_STATUS
    with exchange.db.transaction(readonly=True) as session:
        grades = {g.code: g for g in reports.connection_grades(session, clock.now)}
    assert SANDBOX_CODE not in grades
    assert not (grades[NGHE_AN].sends or grades[NGHE_AN].receives or grades[NGHE_AN].reports_status)
