"""Taking custody of consignments (FederationService.receive) on both backends: every refusal stores
nothing, a document arriving again for more recipients is stored once, updates and replacements
take back the original, delivery reports reach the sender's history, and the ``/relay`` pull
operations answer only for what is routed to the calling peer."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.federation import B_DEPARTMENT, COMMUNE, MINISTRY, add_agencies, caller, consignment_header
from support.letters import official_letter
from support.staging import stage

from gateway.edxml import Business, Organization, ResponseFor, StatusMessage, status_bytes
from gateway.errors import GatewayError, InvalidEdxml, MalformedRequest, NotFound, SenderMismatch, UnknownRecipient
from gateway.exchange.service import ExchangeService, StagedDocument
from gateway.federation import outbox
from gateway.federation.model import ConsignmentHeader
from gateway.federation.service import FederationService
from gateway.store.database import Database
from gateway.store.models import Delivery, Document, InboundConsignment, OutboxConsignment, Recipient

B_COMMUNE = "000.46.24.H14"
LETTER_ID = f"{COMMUNE},2026/11/20,7816/VPCP-TTĐT"
RESPONSE_FOR = ResponseFor(COMMUNE, "7816/VPCP-TTĐT", LETTER_ID)


def _count(database: Database, model: type) -> int:
    with database.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _receive(service: FederationService, edxml: bytes, **changes: object) -> str | None:
    header = consignment_header(edxml, **changes)
    return service.receive("national", header, stage(service.exchange, edxml)).local_document_id


def _deliveries(database: Database) -> dict[tuple[str, int], str]:
    with database.transaction(readonly=True) as session:
        rows = session.execute(select(Delivery.document_id, Delivery.agency_id, Delivery.state))
        return {(document_id, agency_id): state for document_id, agency_id, state in rows}


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"payload_size": 1}, InvalidEdxml, "the payload has"),
        ({"sender_code": MINISTRY}, SenderMismatch, "From/OrganId"),
        ({"recipients": (B_DEPARTMENT, B_COMMUNE)}, InvalidEdxml, "does not address"),
        ({"kind": "parcel"}, MalformedRequest, "is not one of"),
        ({"consignment_id": "not-a-uuid"}, MalformedRequest, "is not a UUID"),
        ({"kind": "status"}, MalformedRequest, "needs its statusCode"),
    ],
    ids=["size", "sender", "recipients", "kind", "id", "status-code"],
)
def test_a_consignment_that_disagrees_with_its_payload_is_refused(
    province_b: FederationService,
    database: Database,
    changes: dict[str, object],
    error: type[GatewayError],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        _receive(province_b, official_letter(COMMUNE, [B_DEPARTMENT]), **changes)
    assert _count(database, InboundConsignment) == 0 and _count(database, Document) == 0


@pytest.mark.parametrize(
    ("sender", "recipients", "message"),
    [(MINISTRY, [B_DEPARTMENT], "sender 000.00.00.G01 is not in"), (COMMUNE, [B_COMMUNE], "000.46.24.H14 are not")],
    ids=["sender", "recipient"],
)
def test_agencies_missing_from_the_directory_are_refused_for_a_later_retry(
    province_b: FederationService, database: Database, sender: str, recipients: list[str], message: str
) -> None:
    edxml = official_letter(sender, recipients)
    with pytest.raises(UnknownRecipient, match=message):
        _receive(province_b, edxml, sender_code=sender, recipients=tuple(recipients))
    assert _count(database, InboundConsignment) == 0, "not recorded, so the same consignment can come again"


def test_a_consignment_stored_by_a_concurrent_receive_is_answered_as_a_duplicate(
    province_b: FederationService, database: Database
) -> None:
    """Two hops delivering the same consignment at once: the loser of the insert answers duplicate."""
    edxml = official_letter(COMMUNE, [B_DEPARTMENT])
    header = consignment_header(edxml)
    staged = stage(province_b.exchange, edxml)
    winner: list[str | None] = []

    class RacedStaging:
        """The staged payload, with the other receive finishing between the dedupe check and the insert."""

        source = staged.source
        size = staged.size

        def flush(self) -> None:
            staged.flush()
            other = province_b.receive("national", header, stage(province_b.exchange, edxml))
            winner.append(other.local_document_id)

        def __getattr__(self, name: str) -> object:
            return getattr(staged, name)

    raced: StagedDocument = RacedStaging()  # type: ignore[assignment]
    answer = province_b.receive("national", header, raced)
    assert answer.duplicate and winner == [answer.local_document_id]
    assert _count(database, Document) == 1 and _count(database, Delivery) == 1


def test_a_document_arriving_again_for_another_recipient_is_stored_once(
    database: Database, tmp_path: Path, province_b: FederationService
) -> None:
    add_agencies(database, {B_COMMUNE: None})
    edxml = official_letter(COMMUNE, [B_DEPARTMENT, B_COMMUNE])
    first = _receive(province_b, edxml)
    second = _receive(province_b, edxml, recipients=(B_DEPARTMENT, B_COMMUNE))
    third = _receive(province_b, edxml, recipients=(B_COMMUNE,))
    assert first == second == third
    with database.transaction(readonly=True) as session:
        recipients = session.scalar(select(func.count()).select_from(Recipient))
    assert recipients == 2 and _count(database, Document) == 1
    assert sorted(_deliveries(database).values()) == ["pending", "pending"], "one copy per recipient"
    assert _count(database, InboundConsignment) == 3


def test_an_update_takes_back_the_original_found_through_its_response_for(
    province_b: FederationService, database: Database
) -> None:
    original = _receive(province_b, official_letter(COMMUNE, [B_DEPARTMENT]))
    update = official_letter(
        COMMUNE,
        [B_DEPARTMENT],
        number="12",
        business=Business(doc_type=2, document_id="000.46.24.H41,2026/11/20,1/never-here"),
        response_for=(RESPONSE_FOR,),
    )
    updated = _receive(province_b, update)
    with database.transaction(readonly=True) as session:
        first = session.get_one(Document, original)
        second = session.get_one(Document, updated)
        assert second.supersedes_id == first.id
        assert first.recalled_at is None, "an update is not a recall"
    states = {document: state for (document, _), state in _deliveries(database).items()}
    assert states == {original: "withdrawn", updated: "pending"}


def test_a_replacement_whose_original_never_passed_here_is_delivered_as_is(
    province_b: FederationService, database: Database
) -> None:
    replacement = official_letter(
        COMMUNE,
        [B_DEPARTMENT],
        number="13",
        business=Business(doc_type=3, replaced_document_ids=("000.46.24.H41,2026/11/20,1/never-here",)),
    )
    document_id = _receive(province_b, replacement)
    with database.transaction(readonly=True) as session:
        assert session.get_one(Document, document_id).supersedes_id is None
    assert list(_deliveries(database).values()) == ["pending"]


def _sent_to_the_ministry(province: ExchangeService) -> tuple[FederationService, str]:
    receipt = province.send_document(caller(province, COMMUNE), stage(province, official_letter(COMMUNE, [MINISTRY])))
    return FederationService(province), receipt.document_id


def _status(document_id: str, code: str, **changes: object) -> ConsignmentHeader:
    """A status about HA's document coming back down from the national instance (empty payload)."""
    fields: dict[str, object] = {
        "kind": "status",
        "origin_document_id": document_id,
        "sender_code": MINISTRY,
        "recipients": (COMMUNE,),
        "payload_sha256": hashlib.sha256(b"").hexdigest(),
        "payload_size": 0,
        "path": ("HB", "national"),
        "status_code": code,
        "recipient_code": MINISTRY,
        "reporter_code": MINISTRY,
        "description": "not delivered (relay failed after 3 attempts): down",
        "staff_department": "gateway:national",
    }
    fields.update(changes)
    return consignment_header(b"", **fields)


def test_a_delivery_report_from_upstream_shows_in_the_senders_history(province: ExchangeService) -> None:
    federation, document_id = _sent_to_the_ministry(province)
    federation.receive("national", _status(document_id, "90"), stage(province, b""))
    (report,) = [e for e in province.history(caller(province, COMMUNE), document_id) if e.status_code == "90"]
    assert (report.recipient_code, report.reporter_code) == (MINISTRY, "gateway:national")
    assert report.description is not None and report.description.startswith("not delivered")


def test_a_status_naming_agencies_unknown_here_is_refused(province: ExchangeService, database: Database) -> None:
    federation, document_id = _sent_to_the_ministry(province)
    with pytest.raises(UnknownRecipient, match="does not know"):
        federation.receive("national", _status(document_id, "90", reporter_code="000.99.99.H99"), stage(province, b""))
    assert _count(database, InboundConsignment) == 0


def test_a_recall_skips_recipients_this_instance_does_not_know(
    province_b: FederationService, database: Database
) -> None:
    original = _receive(province_b, official_letter(COMMUNE, [B_DEPARTMENT]))
    with database.transaction(readonly=True) as session:
        origin_id = session.get_one(Document, original).origin_document_id
    asked = StatusMessage(Organization(COMMUNE, "UBND xã"), RESPONSE_FOR, "13", datetime(2026, 11, 21, 9, 0))
    recall = _receive(
        province_b,
        status_bytes(asked),
        kind="recall",
        origin_document_id=origin_id,
        recipients=("000.99.99.H99", B_DEPARTMENT),
        status_code="13",
        description="gửi nhầm",
    )
    assert recall == original
    assert list(_deliveries(database).values()) == ["withdrawn"]
    with database.transaction(readonly=True) as session:
        sent = [(r.kind, r.status_code) for r in session.scalars(select(OutboxConsignment))]
    assert sent == [("status", "15")], "the agreed answer goes back; nothing is forwarded for the unknown code"


def test_fetch_and_acknowledge_answer_only_for_consignments_waiting_for_the_peer(
    province: ExchangeService, database: Database
) -> None:
    federation, _ = _sent_to_the_ministry(province)
    with database.transaction(readonly=True) as session:
        consignment = session.scalars(select(OutboxConsignment)).one().id
    with pytest.raises(NotFound, match="is waiting for HB"):
        federation.fetch("HB", consignment)
    with pytest.raises(NotFound, match="was routed to HB"):
        federation.acknowledge("HB", consignment)
    header, path, size = federation.fetch("national", consignment)
    assert header.consignment_id == consignment and path.stat().st_size == size

    with database.transaction() as session:
        row = session.get_one(OutboxConsignment, consignment)
        outbox.fail(session, row, "given up", province.clock(), province.settings)
    with pytest.raises(NotFound, match="is waiting for national"):
        federation.fetch("national", consignment)
    with pytest.raises(NotFound, match="failed here"):
        federation.acknowledge("national", consignment)
    with database.transaction(readonly=True) as session:
        assert session.get_one(OutboxConsignment, consignment).state == outbox.FAILED


def test_begin_staging_writes_into_the_instance_blob_store(province_b: FederationService) -> None:
    staged = province_b.begin_staging()
    staged.write(b"payload")
    assert staged.commit() == (hashlib.sha256(b"payload").hexdigest(), 7)
    assert province_b.blobs.path(hashlib.sha256(b"payload").hexdigest()).read_bytes() == b"payload"
