"""Who may report which status, and the workflow around fetch and recall, against ExchangeService
directly (no HTTP): milliseconds per rule, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from exchange_support import RECIPIENT, SENDER, T0, THIRD, Callers, Clock
from sqlalchemy import select
from support.letters import official_letter
from support.staging import stage

from gateway.edxml import Business, ResponseFor, read_status
from gateway.errors import Forbidden, IllegalTransition, InvalidStatus, NotFound
from gateway.exchange.service import ExchangeService
from gateway.store.models import Recipient

ORIGINAL_ID = f"{SENDER},2026/11/20,7816/VPCP-TTĐT"


def send(service: ExchangeService, callers: Callers, recipients: tuple[str, ...] = (RECIPIENT,)) -> str:
    return service.send_document(callers.sender, stage(service, official_letter(SENDER, list(recipients)))).document_id


def fetch(service: ExchangeService, caller, document_id: str) -> str:
    """Lease and fetch the caller's copy of ``document_id``; returns the item id."""
    item = next(i for i in service.pending(caller) if i.document_id == document_id and i.kind == "document")
    service.fetch(caller, item.item_id)
    return item.item_id


def codes(service: ExchangeService, callers: Callers, document_id: str) -> dict[str, list[str]]:
    per_recipient: dict[str, list[str]] = {}
    for entry in service.history(callers.sender, document_id):
        per_recipient.setdefault(entry.recipient_code, []).append(entry.status_code)
    return per_recipient


def copy_of(service: ExchangeService, document_id: str, agency_id: int) -> Recipient:
    with service.db.transaction(readonly=True) as session:
        return session.scalars(
            select(Recipient).where(Recipient.document_id == document_id, Recipient.agency_id == agency_id)
        ).one()


# -- who may report what ----------------------------------------------------------------------


def test_the_sender_reporting_a_processing_status_is_forbidden(service, callers: Callers) -> None:
    document_id = send(service, callers)
    with pytest.raises(Forbidden, match="recipients report its processing status"):
        service.update_status(callers.sender, document_id, "03")


def test_a_recipient_recalling_is_forbidden(service, callers: Callers) -> None:
    document_id = send(service, callers)
    fetch(service, callers.recipient, document_id)
    with pytest.raises(Forbidden, match="Only the sender"):
        service.update_status(callers.recipient, document_id, "13")


@pytest.mark.parametrize("code", ["03", "13", "15"])
def test_a_stranger_gets_not_found(service, callers: Callers, code: str) -> None:
    document_id = send(service, callers)
    with pytest.raises(NotFound) as refused:
        service.update_status(callers.stranger, document_id, code, "x")
    assert "Cơ quan" not in refused.value.message, "nothing about the document leaks"
    with pytest.raises(NotFound):
        service.history(callers.stranger, document_id)
    with pytest.raises(NotFound):
        service.update_status(callers.recipient, "no-such-document", code, "x")


@pytest.mark.parametrize("code", ["02", "16"])
def test_a_rejection_or_refusal_needs_its_reason(service, callers: Callers, code: str) -> None:
    document_id = send(service, callers)
    with pytest.raises(InvalidStatus, match="reason"):
        service.update_status(callers.recipient, document_id, code, "   ")


def test_an_unknown_code_is_invalid(service, callers: Callers) -> None:
    document_id = send(service, callers)
    with pytest.raises(InvalidStatus, match="not a QCVN 102 status code"):
        service.update_status(callers.recipient, document_id, "07")


# -- the workflow around fetching ---------------------------------------------------------------


def test_processing_statuses_wait_for_the_fetch(service, callers: Callers) -> None:
    document_id = send(service, callers)
    with pytest.raises(IllegalTransition, match="getDocument"):
        service.update_status(callers.recipient, document_id, "04")
    fetch(service, callers.recipient, document_id)
    service.update_status(callers.recipient, document_id, "04")
    assert codes(service, callers, document_id) == {RECIPIENT: ["01", "04"]}


def test_no_rejection_after_acceptance_and_no_way_back(service, callers: Callers, clock: Clock) -> None:
    document_id = send(service, callers)
    fetch(service, callers.recipient, document_id)
    with pytest.raises(IllegalTransition, match="already recorded"):
        service.update_status(callers.recipient, document_id, "01")
    service.update_status(callers.recipient, document_id, "03")
    with pytest.raises(IllegalTransition, match="before it is accepted"):
        service.update_status(callers.recipient, document_id, "02", "Sai thẩm quyền")
    for minutes in (1, 2, 3):
        clock.now = T0 + timedelta(minutes=minutes)
        service.update_status(callers.recipient, document_id, "05", f"Tiến độ {minutes}")
    with pytest.raises(IllegalTransition, match="cannot go back"):
        service.update_status(callers.recipient, document_id, "04")
    assert codes(service, callers, document_id) == {RECIPIENT: ["01", "03", "05", "05", "05"]}
    assert copy_of(service, document_id, callers.recipient.agency_id).status == "05"


def test_a_rejected_copy_is_final(service, callers: Callers) -> None:
    document_id = send(service, callers)
    service.update_status(callers.recipient, document_id, "02", "Gửi nhầm đơn vị")
    with pytest.raises(IllegalTransition, match=r"rejected \(02\)"):
        service.update_status(callers.recipient, document_id, "01")


# -- recall and take-back -----------------------------------------------------------------------


def test_an_answer_needs_a_pending_recall(service, callers: Callers) -> None:
    document_id = send(service, callers)
    fetch(service, callers.recipient, document_id)
    with pytest.raises(IllegalTransition, match="none is pending"):
        service.update_status(callers.recipient, document_id, "15")


def test_recall_withdraws_unfetched_copies_and_asks_fetched_ones(service, callers: Callers) -> None:
    document_id = send(service, callers, (RECIPIENT, THIRD))
    fetch(service, callers.recipient, document_id)
    receipt = service.update_status(callers.sender, document_id, "13", "Ban hành nhầm")
    assert receipt.notified == (RECIPIENT,), "only the recipient that fetched it is asked"
    assert service.pending(callers.third) == [], "the unfetched copy is withdrawn"
    assert copy_of(service, document_id, callers.third.agency_id).recall_state == "15"
    notice = [i for i in service.pending(callers.recipient) if i.kind == "status"]
    assert [(i.status_code, i.status_from) for i in notice] == [("13", SENDER)]
    message = read_status(service.fetch(callers.recipient, notice[0].item_id).path)
    assert (message.status_code, message.description, message.response_for.document_id) == (
        "13",
        "Ban hành nhầm",
        ORIGINAL_ID,
    )
    with pytest.raises(InvalidStatus):
        service.update_status(callers.recipient, document_id, "16")
    service.update_status(callers.recipient, document_id, "15", "Đã hủy")
    with pytest.raises(IllegalTransition, match="agreed"):
        service.update_status(callers.recipient, document_id, "04")
    with pytest.raises(IllegalTransition, match="none is pending"):
        service.update_status(callers.recipient, document_id, "16", "x")
    assert codes(service, callers, document_id) == {RECIPIENT: ["01", "13", "15"], THIRD: ["15"]}


def test_a_refused_recall_lets_processing_go_on(service, callers: Callers) -> None:
    document_id = send(service, callers)
    fetch(service, callers.recipient, document_id)
    service.update_status(callers.sender, document_id, "13")
    service.update_status(callers.recipient, document_id, "16", "Đã xử lý một phần")
    service.update_status(callers.recipient, document_id, "04")
    assert codes(service, callers, document_id) == {RECIPIENT: ["01", "13", "16", "04"]}


@pytest.mark.parametrize("doc_type", [2, 3], ids=["update", "replace"])
def test_update_and_replace_take_the_original_back(service, callers: Callers, doc_type: int) -> None:
    document_id = send(service, callers, (RECIPIENT, THIRD))
    fetch(service, callers.recipient, document_id)
    stale = [i.item_id for i in service.pending(callers.third)]
    follow_up = official_letter(
        SENDER,
        [RECIPIENT, THIRD],
        number="7817",
        business=Business(doc_type=doc_type, document_id=ORIGINAL_ID),
        response_for=(ResponseFor(SENDER, "7816/VPCP-TTĐT", ORIGINAL_ID),),
    )
    receipt = service.send_document(callers.sender, stage(service, follow_up))
    with pytest.raises(NotFound, match="withdrawn"):
        service.fetch(callers.third, stale[0])
    assert [(i.document_id, i.business_type) for i in service.pending(callers.third)] == [
        (receipt.document_id, doc_type)
    ]
    assert copy_of(service, document_id, callers.recipient.agency_id).recall_state == "13"
    service.update_status(callers.recipient, document_id, "15", "Đồng ý")
    assert codes(service, callers, document_id) == {RECIPIENT: ["01", "15"], THIRD: ["15"]}


def test_only_ones_own_documents_can_be_superseded(service, callers: Callers) -> None:
    send(service, callers)
    foreign = official_letter(RECIPIENT, [SENDER], number="12", business=Business(doc_type=1, document_id=ORIGINAL_ID))
    with pytest.raises(NotFound, match="no document you sent"):
        service.send_document(callers.recipient, stage(service, foreign))
