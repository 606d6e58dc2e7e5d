"""A recall or an update catches copies that have not left an instance yet, on both backends.

Issue: "13 and BussinessDocType 1/2/3 go forward to the recipients' instances, withdrawing copies
not yet fetched anywhere along the way". A copy still waiting in an outbox, never pushed nor
leased, is taken out of its consignment where it waits and answered 15 by the gateway; no recall
follows it. A copy that may have left (pushed, leased, or failed after trying) is recalled as
before. The real three-instance network is tests/federation/test_network_recall.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from support.clock import Clock
from support.federation import (
    B_DEPARTMENT,
    COMMUNE,
    MINISTRY,
    add_agencies,
    caller,
    consignment_header,
    exchange_service,
)
from support.letters import official_letter
from support.staging import stage

from gateway.edxml import Business, Organization, ResponseFor, StatusMessage, status_bytes
from gateway.exchange.service import ExchangeService
from gateway.federation import outbox
from gateway.federation.model import ConsignmentHeader
from gateway.federation.service import FederationService
from gateway.store.database import Database
from gateway.store.models import Agency, AuditEntry, Document, OutboxConsignment, Recipient

LETTER_ID = f"{COMMUNE},2026/11/20,7816/VPCP-TTĐT"


def _outbox(database: Database) -> list[tuple[str, str, list[str], str | None]]:
    """(kind, state, recipients, status code) of every consignment, sorted (the test clock stands still)."""
    with database.transaction(readonly=True) as session:
        rows = session.scalars(select(OutboxConsignment))
        return sorted((r.kind, r.state, json.loads(r.recipients), r.status_code) for r in rows)


def _recall_states(database: Database, document_id: str) -> dict[str, str | None]:
    with database.transaction(readonly=True) as session:
        rows = session.execute(
            select(Agency.code, Recipient.recall_state)
            .join(Agency, Agency.id == Recipient.agency_id)
            .where(Recipient.document_id == document_id)
        )
        return {code: state for code, state in rows}


def _audit_actions(database: Database) -> list[str]:
    with database.transaction(readonly=True) as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_a_recall_at_the_origin_takes_back_a_copy_that_never_left(
    province: ExchangeService, database: Database
) -> None:
    commune = caller(province, COMMUNE)
    sent = province.send_document(commune, stage(province, official_letter(COMMUNE, [MINISTRY, B_DEPARTMENT])))
    assert _outbox(database) == [("document", "waiting", [MINISTRY, B_DEPARTMENT], None)]

    receipt = province.update_status(commune, sent.document_id, "13", "gửi nhầm")

    assert receipt.notified == (), "nobody has a copy to give back"
    assert _outbox(database) == [("document", "withdrawn", [], None)], "no recall follows a copy that never left"
    assert _recall_states(database, sent.document_id) == {MINISTRY: "15", B_DEPARTMENT: "15"}
    answers = [e for e in province.history(commune, sent.document_id) if e.status_code == "15"]
    assert sorted(e.recipient_code for e in answers) == sorted([B_DEPARTMENT, MINISTRY])
    assert all("before it left" in (e.description or "") for e in answers)
    assert "relay_withdrawn" in _audit_actions(database)
    with database.transaction() as session:
        assert outbox.due_for_push(session, "national", province.clock() + timedelta(hours=1), 10) == []


def test_a_copy_that_may_have_left_is_recalled_through_the_network(
    province: ExchangeService, database: Database, clock: Clock
) -> None:
    commune = caller(province, COMMUNE)
    sent = province.send_document(commune, stage(province, official_letter(COMMUNE, [MINISTRY])))
    with database.transaction() as session:
        (row,) = outbox.due_for_push(session, "national", clock.now, 10)
        outbox.start_push(row, clock.now, 30)
        outbox.retry_later(session, province.settings, row, "connection reset after the request was sent", clock.now)

    receipt = province.update_status(commune, sent.document_id, "13", "gửi nhầm")

    assert receipt.notified == (MINISTRY,)
    assert _outbox(database) == [
        ("document", "waiting", [MINISTRY], None),
        ("recall", "waiting", [MINISTRY], "13"),
    ], "a push whose answer was lost may have delivered it: the recall must follow"
    assert _recall_states(database, sent.document_id) == {MINISTRY: "13"}


def test_only_the_recalled_recipients_leave_a_shared_consignment(province: ExchangeService, database: Database) -> None:
    """An update (BussinessDocType 2) for one of two recipients sharing a consignment takes that one out."""
    commune = caller(province, COMMUNE)
    province.send_document(commune, stage(province, official_letter(COMMUNE, [MINISTRY, B_DEPARTMENT])))
    update = official_letter(COMMUNE, [MINISTRY], number="7817", business=Business(doc_type=2, document_id=LETTER_ID))
    province.send_document(commune, stage(province, update))
    assert _outbox(database) == [
        ("document", "waiting", [MINISTRY], None),
        ("document", "waiting", [B_DEPARTMENT], None),
    ], "the ministry gets only the update; B's department keeps the original"


def _recall(origin_document_id: str) -> tuple[ConsignmentHeader, bytes]:
    """The sender's 13 about the letter, as HA relays it to the national instance."""
    notice = status_bytes(
        StatusMessage(
            Organization(COMMUNE, "UBND xã"),
            ResponseFor(COMMUNE, "7816/VPCP-TTĐT", LETTER_ID),
            "13",
            datetime(2026, 11, 21, 9, 0),
            description="gửi nhầm",
        )
    )
    header = consignment_header(
        notice,
        kind="recall",
        origin_document_id=origin_document_id,
        path=("HA",),
        hop_count=1,
        status_code="13",
        description="gửi nhầm",
    )
    return header, notice


@pytest.fixture
def hub(database: Database, tmp_path: Path, clock: Clock) -> FederationService:
    """The national instance, which has just stored HA's letter for HB's department."""
    add_agencies(database, {COMMUNE: "HA", B_DEPARTMENT: "HB"})
    return FederationService(exchange_service(database, tmp_path, clock, instance_id="national"))


def _relayed_letter(hub: FederationService) -> tuple[ConsignmentHeader, str]:
    """HA's letter for HB's department arriving at the hub: its header and the hub's document id."""
    letter = official_letter(COMMUNE, [B_DEPARTMENT])
    header = consignment_header(letter, path=("HA",), hop_count=1)
    received = hub.receive("HA", header, stage(hub.exchange, letter))
    assert received.local_document_id is not None
    return header, received.local_document_id


def test_a_hub_takes_back_a_copy_waiting_for_the_next_province_and_answers_the_origin(
    hub: FederationService, database: Database
) -> None:
    header, local_id = _relayed_letter(hub)
    assert _outbox(database) == [("document", "waiting", [B_DEPARTMENT], None)], "HB has not pulled it yet"

    recall, notice = _recall(header.origin_document_id)
    hub.receive("HA", recall, stage(hub.exchange, notice))

    assert _outbox(database) == [
        ("document", "withdrawn", [], None),
        ("status", "waiting", [COMMUNE], "15"),
    ], "nothing goes on to HB; the 15 goes back towards HA"
    assert hub.pull("HB", 10) == []
    with database.transaction(readonly=True) as session:
        answer = session.scalars(select(OutboxConsignment).where(OutboxConsignment.kind == "status")).one()
        assert (answer.next_hop, answer.recipient_code, answer.origin_instance) == ("HA", B_DEPARTMENT, "HA")
        assert session.get_one(Document, local_id).recalled_at is not None


def test_a_hub_forwards_the_recall_when_the_next_province_already_leased_the_copy(
    hub: FederationService, database: Database
) -> None:
    header, _ = _relayed_letter(hub)
    assert len(hub.pull("HB", 10)) == 1, "HB may have stored it already"

    recall, notice = _recall(header.origin_document_id)
    hub.receive("HA", recall, stage(hub.exchange, notice))
    assert _outbox(database) == [
        ("document", "sending", [B_DEPARTMENT], None),
        ("recall", "waiting", [B_DEPARTMENT], "13"),
    ]
