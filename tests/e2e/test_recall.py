"""Recall (13) and update/replace (BussinessDocType 1/2/3): unfetched copies are withdrawn,
fetched ones await the recipient's 15 (agreed) or 16 (refused). Per edxml-spec.md §4.2, §6.1.
"""

from __future__ import annotations

import pytest
import zeep
from support.letters import official_letter
from support.live import CAO_BANG, NGHE_AN, VPCP

from gateway.edxml import Business, ResponseFor, read_status

ORIGINAL_ID = f"{VPCP},2026/11/20,7816/VPCP-TTĐT"


def code_of(call, **kwargs) -> str:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        call(**kwargs)
    return caught.value.code.split(":", 1)[1]


def history_of(client, document_id: str) -> dict[str, list[str]]:
    per_recipient: dict[str, list[str]] = {}
    for entry in client.service.getStatusHistory(documentId=document_id):
        per_recipient.setdefault(entry.recipientCode, []).append(entry.statusCode)
    return per_recipient


def send_and_fetch_by(vpcp, fetcher) -> tuple[str, str]:
    """Send the original to both provinces; ``fetcher`` fetches its copy. Returns (document id, the
    other province's item id)."""
    document_id = vpcp.service.sendDocument(document=official_letter(VPCP, [NGHE_AN, CAO_BANG])).documentId
    item = fetcher.service.getPendingDocuments()[0]
    fetcher.service.getDocument(itemId=item.itemId)
    fetcher.service.confirmReceived(itemId=item.itemId)
    return document_id, item.itemId


def test_recall_withdraws_unfetched_copies_and_asks_fetched_ones(client_for, live_gateway) -> None:
    vpcp, nghe_an, cao_bang = client_for(VPCP), client_for(NGHE_AN), client_for(CAO_BANG)
    document_id, _ = send_and_fetch_by(vpcp, nghe_an)
    unfetched_item = cao_bang.service.getPendingDocuments()[0].itemId

    receipt = vpcp.service.updateStatus(documentId=document_id, statusCode="13", description="Ban hành nhầm")
    assert receipt.notified.string == [NGHE_AN], "only the recipient that fetched it is asked"

    assert cao_bang.service.getPendingDocuments() in (None, [])
    assert code_of(cao_bang.service.getDocument, itemId=unfetched_item) == "Client.NotFound"
    assert history_of(vpcp, document_id)[CAO_BANG] == ["15"], "the gateway answers for a withdrawn copy"

    notice = nghe_an.service.getPendingDocuments()[0]
    assert (notice.kind, notice.statusCode, notice.statusFrom) == ("status", "13", VPCP)
    message = read_status(nghe_an.service.getDocument(itemId=notice.itemId).edxml)
    assert (message.status_code, message.sender.organ_id, message.description) == ("13", VPCP, "Ban hành nhầm")
    assert message.response_for.document_id == ORIGINAL_ID

    nghe_an.service.updateStatus(documentId=document_id, statusCode="15", description="Đã hủy văn bản")
    assert history_of(vpcp, document_id)[NGHE_AN] == ["01", "13", "15"]
    assert code_of(nghe_an.service.updateStatus, documentId=document_id, statusCode="04") == (
        "Client.IllegalTransition"
    )
    assert code_of(nghe_an.service.updateStatus, documentId=document_id, statusCode="16", description="x") == (
        "Client.IllegalTransition"
    ), "a recall is answered once"


def test_refused_recall_lets_processing_go_on(client_for, live_gateway) -> None:
    vpcp, nghe_an = client_for(VPCP), client_for(NGHE_AN)
    document_id, _ = send_and_fetch_by(vpcp, nghe_an)
    vpcp.service.updateStatus(documentId=document_id, statusCode="13")
    nghe_an.service.updateStatus(documentId=document_id, statusCode="16", description="Đã xử lý xong một phần")
    nghe_an.service.updateStatus(documentId=document_id, statusCode="04")
    assert history_of(vpcp, document_id)[NGHE_AN] == ["01", "13", "16", "04"]


def test_recall_answers_need_a_pending_recall(client_for, live_gateway) -> None:
    vpcp, nghe_an = client_for(VPCP), client_for(NGHE_AN)
    document_id, _ = send_and_fetch_by(vpcp, nghe_an)
    assert code_of(nghe_an.service.updateStatus, documentId=document_id, statusCode="15") == (
        "Client.IllegalTransition"
    )


@pytest.mark.parametrize("doc_type", [1, 2, 3], ids=["recall", "update", "replace"])
def test_business_doc_types_supersede_the_original(client_for, live_gateway, doc_type: int) -> None:
    vpcp, nghe_an, cao_bang = client_for(VPCP), client_for(NGHE_AN), client_for(CAO_BANG)
    document_id, _ = send_and_fetch_by(vpcp, nghe_an)
    stale_item = cao_bang.service.getPendingDocuments()[0].itemId

    follow_up = official_letter(
        VPCP,
        [NGHE_AN, CAO_BANG],
        number="7817",
        business=Business(doc_type=doc_type, document_id=ORIGINAL_ID),
        response_for=(ResponseFor(VPCP, "7816/VPCP-TTĐT", ORIGINAL_ID),),
    )
    receipt = vpcp.service.sendDocument(document=follow_up)
    assert receipt.duplicate is False

    assert code_of(cao_bang.service.getDocument, itemId=stale_item) == "Client.NotFound"
    fresh = cao_bang.service.getPendingDocuments()
    assert [(i.documentId, i.businessType) for i in fresh] == [(receipt.documentId, doc_type)]
    assert [(i.documentId, i.businessType) for i in nghe_an.service.getPendingDocuments()] == [
        (receipt.documentId, doc_type)
    ]
    nghe_an.service.updateStatus(documentId=document_id, statusCode="15", description="Đồng ý")
    assert history_of(vpcp, document_id) == {NGHE_AN: ["01", "15"], CAO_BANG: ["15"]}


def test_cannot_supersede_a_document_one_did_not_send(client_for, live_gateway) -> None:
    vpcp, nghe_an = client_for(VPCP), client_for(NGHE_AN)
    vpcp.service.sendDocument(document=official_letter(VPCP, [NGHE_AN]))
    foreign = official_letter(NGHE_AN, [VPCP], number="12", business=Business(doc_type=1, document_id=ORIGINAL_ID))
    assert code_of(nghe_an.service.sendDocument, document=foreign) == "Client.NotFound"
