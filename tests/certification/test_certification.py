"""Certification runs driven against the exchange service directly: the grade follows behaviour."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from support.clock import Clock
from support.letters import official_letter
from support.live import NGHE_AN, seed_directory

from gateway.certification import CertificationInProgress, Certifications
from gateway.certification.engine import LARGE_ATTACHMENT_BYTES
from gateway.certification.script import (
    ATTACHMENTS,
    LARGE,
    PROCESS,
    RECALL,
    REJECT,
    SANDBOX_CODE,
    SIGNED,
    UPDATE,
)
from gateway.config import Settings
from gateway.edxml import DocumentMessage, StatusMessage, read_document, read_status
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
    from gateway.edxml.signature import verify_signature

    signing_exchange, certifications = _signing_certifications(exchange, clock, tmp_path, large_bytes=1000)
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    assert "receive:signed" in {c.key for c in run.checks}
    desk = Desk(signing_exchange)
    signed = [i for i in signing_exchange.pending(desk.me, 100) if "[EDXML-CERTIFY:SIGNED]" in i.subject]
    assert len(signed) == 1 and signed[0].signer and "Hộp cát kiểm thử" in signed[0].signer
    fetched = signing_exchange.fetch(desk.me, signed[0].item_id)
    bundle = signing_exchange.settings.trusted_certs
    assert bundle is not None
    assert "Hộp cát kiểm thử" in verify_signature(fetched.path, bundle)


def _a_whole_run_with_a_document_for_the_sandbox(certifications: Certifications, exchange: ExchangeService) -> None:
    """Nghệ An plays a whole run to the top grade, sending the sandbox its own document on the way."""
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    desk = Desk(exchange)
    desk.send_to_sandbox()
    _play(certifications, desk, run.run_id)
    assert certifications.view(run.run_id).grade == REPORTS_STATUS


def test_certification_traffic_is_never_counted_in_reports(
    certifications: Certifications, exchange: ExchangeService, clock: Clock
) -> None:
    from gateway import reports

    _a_whole_run_with_a_document_for_the_sandbox(certifications, exchange)
    with exchange.db.transaction(readonly=True) as session:
        grades = {g.code: g for g in reports.connection_grades(session, clock.now)}
    assert SANDBOX_CODE not in grades
    assert not (grades[NGHE_AN].sends or grades[NGHE_AN].receives or grades[NGHE_AN].reports_status)


def test_certification_traffic_is_never_in_the_leadership_view(
    certifications: Certifications, exchange: ExchangeService, clock: Clock
) -> None:
    from gateway.leadership import leadership_view, rows
    from gateway.reports import VIETNAM_TIME

    _a_whole_run_with_a_document_for_the_sandbox(certifications, exchange)
    day = clock.now.astimezone(VIETNAM_TIME).date()
    with exchange.db.transaction(readonly=True) as session:
        view = leadership_view(session, day, day, clock.now)
    assert rows(view) == [], "neither the sandbox nor the agency it tested received anything real"
    assert [(d.documents, sum(d.statuses.values())) for d in view.trend] == [(0, 0)]


# -- what the sandbox sends ------------------------------------------------------------------------

IDENTIFIERS = {
    "organ_id",
    "code_number",
    "code_notation",
    "document_id",
    "code",
    "email",
    "telephone",
    "fax",
    "website",
    "content_id",
    "content_type",
    "trace_organ_ids",
    "replaced_document_ids",
    "status_code",
}
"""Fields that carry codes, identifiers or addresses, not text a clerk reads: ASCII by nature."""


def _vietnamese(text: str) -> bool:
    """Vietnamese as a clerk writes it: non-ASCII, with at least one letter carrying a diacritic (or đ)."""
    return any(ch in "đĐ" or unicodedata.normalize("NFD", ch) != ch for ch in text)


def _texts(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, text) of every text field filled in an edXML dataclass, identifiers left out."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, tuple):
        for index, member in enumerate(value):
            yield from _texts(member, f"{path}[{index}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for spec in dataclasses.fields(value):
            if spec.name not in IDENTIFIERS:
                yield from _texts(getattr(value, spec.name), f"{path}.{spec.name}" if path else spec.name)


def _signing_certifications(
    exchange: ExchangeService, clock: Clock, tmp_path: Path, large_bytes: int
) -> tuple[ExchangeService, Certifications]:
    """Runs of a gateway where signatures are configured, so the script sends every document it has."""
    from support.certificates import Authority

    authority = Authority("Root CA of the test exchange")
    key, cert = authority.issue("Hộp cát kiểm thử")
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(authority.pem())
    signing = ExchangeService(
        exchange.db, exchange.blobs, Settings(data_dir=tmp_path, trusted_certs=bundle), clock=clock
    )
    return signing, Certifications(signing, large_bytes=large_bytes, clock=clock, signing=(key, cert))


def _collect(
    exchange: ExchangeService, certifications: Certifications, run_id: str
) -> tuple[dict[str, DocumentMessage], list[StatusMessage]]:
    """What the agency receives over a run, parsed: each document by its marker's role, and the status messages.

    Fetching the originals is what makes the sandbox send the update and the recall, so the desk
    pulls, fetches and acknowledges everything and the run is advanced between rounds.
    """
    desk = Desk(exchange)
    documents: dict[str, DocumentMessage] = {}
    statuses: list[StatusMessage] = []
    for _ in range(3):
        for item in exchange.pending(desk.me, 100):
            fetched = exchange.fetch(desk.me, item.item_id)
            exchange.acknowledge(desk.me, item.item_id)
            if item.kind == "document":
                message = read_document(fetched.path)
                marker = re.match(r"\[EDXML-CERTIFY:([A-Z]+)\] ", message.subject)
                assert marker, message.subject
                assert marker.group(1).lower() not in documents, "each test document is sent once"
                documents[marker.group(1).lower()] = message
            else:
                statuses.append(read_status(fetched.path))
        certifications.advance(run_id)
    return documents, statuses


def test_the_sandbox_sends_what_real_traffic_carries(exchange: ExchangeService, clock: Clock, tmp_path: Path) -> None:
    large = 1_234_567  # not a multiple of the filler's pattern: the size must be exact, not rounded
    signing, certifications = _signing_certifications(exchange, clock, tmp_path, large)
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    documents, statuses = _collect(signing, certifications, run.run_id)

    assert set(documents) == {PROCESS, ATTACHMENTS, LARGE, REJECT, RECALL, SIGNED, UPDATE}
    assert len(documents[PROCESS].attachments) == 1
    assert len(documents[ATTACHMENTS].attachments) >= 2
    assert len({a.name for a in documents[ATTACHMENTS].attachments}) == len(documents[ATTACHMENTS].attachments)
    assert [a.size for a in documents[LARGE].attachments] == [large]
    assert documents[SIGNED].signed and not any(m.signed for r, m in documents.items() if r != SIGNED)

    for role, message in documents.items():
        assert message.sender.organ_id == SANDBOX_CODE
        assert [r.organ_id for r in message.recipients] == [NGHE_AN]
        assert message.due_date is not None and message.due_date > message.promulgation_date, role
        assert len(message.to_places) >= 1, role
        texts = dict(_texts(message))
        for name in (
            "subject",
            "content",
            "type_name",
            "place",
            "signer_competence",
            "signer_position",
            "signer_full_name",
            "sender.organ_name",
            "sender.organization_in_charge",
            "sender.organ_add",
            "recipients[0].organ_name",
            "to_places[0]",
            "attachments[0].name",
            "attachments[0].description",
        ):
            assert name in texts, (role, name)
        not_vietnamese = {name: text for name, text in texts.items() if not _vietnamese(text)}
        assert not not_vietnamese, (role, not_vietnamese)

    update, original = documents[UPDATE], documents[ATTACHMENTS]
    assert update.business.doc_type == 2
    assert original.document_id and update.business.document_id == original.document_id
    assert update.business.reason and _vietnamese(update.business.reason)
    assert [r.document_id for r in update.response_for] == [original.document_id]
    assert update.document_id != original.document_id

    [recall] = [s for s in statuses if s.status_code == "13"]
    assert recall.sender.organ_id == SANDBOX_CODE
    assert recall.response_for.document_id == documents[RECALL].document_id
    not_vietnamese = {name: text for name, text in _texts(recall) if not _vietnamese(text)}
    assert recall.description and not not_vietnamese, not_vietnamese


def test_the_default_large_attachment_is_tens_of_megabytes(exchange: ExchangeService, clock: Clock) -> None:
    """The default size is tens of MB, and a run with the defaults sends exactly that many bytes.

    Every test document of the run is built, written, validated and stored with the default size
    (about 28 MB of edXML for the large one); only the large document is fetched and read back.
    """
    assert 10_000_000 <= LARGE_ATTACHMENT_BYTES < 100_000_000
    assert exchange.settings.certify_large_bytes == LARGE_ATTACHMENT_BYTES == Settings().certify_large_bytes
    assert exchange.settings.certify_large_bytes < exchange.settings.max_document_bytes
    certifications = Certifications.from_settings(exchange)
    assert certifications.large_bytes == LARGE_ATTACHMENT_BYTES
    certifications.clock = clock
    certifications.start(NGHE_AN, "operator", timedelta(minutes=30))
    desk = Desk(exchange)
    [item] = [i for i in exchange.pending(desk.me, 100) if i.subject.startswith("[EDXML-CERTIFY:LARGE]")]
    assert item.size > LARGE_ATTACHMENT_BYTES * 4 // 3
    message = read_document(exchange.fetch(desk.me, item.item_id).path)
    assert [a.size for a in message.attachments] == [LARGE_ATTACHMENT_BYTES]
