"""The whole story over real HTTP with zeep: a ministry sends, two provinces handle it, the sender follows.

Runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import zeep
from sqlalchemy import func, select
from support.letters import official_letter
from support.live import CAO_BANG, NGHE_AN, NS, VPCP, secret_of

from gateway.config import WSDL_DIR
from gateway.edxml import read_document, read_status
from gateway.store.models import Delivery, Document


def _items(client, **kwargs) -> list:
    return list(client.service.getPendingDocuments(**kwargs) or [])


def test_ministry_sends_two_provinces_handle_it_and_the_sender_follows(client_for, live_gateway) -> None:
    vpcp, nghe_an, cao_bang = client_for(VPCP), client_for(NGHE_AN), client_for(CAO_BANG)
    edxml = official_letter(VPCP, [NGHE_AN, CAO_BANG])

    receipt = vpcp.service.sendDocument(document=edxml)
    assert receipt.duplicate is False
    assert receipt.recipients.string == [NGHE_AN, CAO_BANG]
    document_id = receipt.documentId

    for province in (nghe_an, cao_bang):
        items = _items(province)
        assert [(i.kind, i.documentId, i.senderCode) for i in items] == [("document", document_id, VPCP)]
        item = items[0]
        assert item.subject == "Về việc triển khai kết nối liên thông văn bản điện tử"
        assert item.code == "7816/VPCP-TTĐT"
        fetched = province.service.getDocument(itemId=item.itemId)
        assert fetched.edxml == edxml
        assert fetched.sha256 == hashlib.sha256(edxml).hexdigest() and fetched.size == len(edxml)
        assert read_document(fetched.edxml).recipients[0].organ_id == NGHE_AN
        assert province.service.confirmReceived(itemId=item.itemId) is True
        assert province.service.confirmReceived(itemId=item.itemId) is True, "acknowledging twice is harmless"

    for code, text in (("03", "Đã vào sổ"), ("04", "Giao Sở TT&TT"), ("05", "Đang xử lý"), ("06", "Hoàn thành")):
        receipt_status = nghe_an.service.updateStatus(
            documentId=document_id,
            statusCode=code,
            description=text,
            staff={"department": "Văn thư", "staff": "Nguyễn Văn A"},
        )
        assert (receipt_status.statusCode, receipt_status.notified.string) == (code, [VPCP])
    cao_bang.service.updateStatus(documentId=document_id, statusCode="02", description="Gửi nhầm đơn vị")

    history = vpcp.service.getStatusHistory(documentId=document_id)
    per_recipient: dict[str, list[str]] = {}
    for entry in history:
        per_recipient.setdefault(entry.recipientCode, []).append(entry.statusCode)
    assert per_recipient == {NGHE_AN: ["01", "03", "04", "05", "06"], CAO_BANG: ["01", "02"]}
    times = [entry.reportedAt for entry in history]
    assert times == sorted(times)
    assert [e.description for e in history if e.statusCode == "02"] == ["Gửi nhầm đơn vị"]
    assert {e.staffName for e in history if e.recipientCode == NGHE_AN and e.statusCode != "01"} == {"Nguyễn Văn A"}

    own = nghe_an.service.getStatusHistory(documentId=document_id)
    assert {e.recipientCode for e in own} == {NGHE_AN}, "a recipient sees its own copy's history only"

    status_items = _items(vpcp, maxItems=50)
    assert sorted((i.statusFrom, i.statusCode) for i in status_items) == sorted(
        [(NGHE_AN, c) for c in ("01", "03", "04", "05", "06")] + [(CAO_BANG, c) for c in ("01", "02")]
    )
    for item in status_items:
        message = read_status(vpcp.service.getDocument(itemId=item.itemId).edxml)
        assert (message.sender.organ_id, message.status_code) == (item.statusFrom, item.statusCode)
        assert message.response_for.document_id == f"{VPCP},2026/11/20,7816/VPCP-TTĐT"
        vpcp.service.confirmReceived(itemId=item.itemId)
    assert _items(vpcp) == []
    assert _items(nghe_an) == [] and _items(cao_bang) == []


def test_resending_the_same_document_is_idempotent(client_for, live_gateway) -> None:
    vpcp = client_for(VPCP)
    edxml = official_letter(VPCP, [NGHE_AN])
    first = vpcp.service.sendDocument(document=edxml)
    second = vpcp.service.sendDocument(document=edxml)
    assert second.documentId == first.documentId
    assert (first.duplicate, second.duplicate) == (False, True)
    with live_gateway.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 1
        assert session.scalar(select(func.count()).select_from(Delivery)) == 1


def test_getAgencies_lists_the_directory(client_for, live_gateway) -> None:
    agencies = client_for(NGHE_AN).service.getAgencies()
    codes = {a.code: a for a in agencies}
    assert codes[VPCP].name == "Văn phòng Chính phủ" and codes[VPCP].level == 1
    assert codes["000.00.00.H63"].active is False
    assert codes[VPCP].homeInstance is None, "sent only to a caller that asks for it"
    homes = {a.code: a.homeInstance for a in client_for(NGHE_AN).service.getAgencies(includeHomeInstance=True)}
    assert set(homes.values()) == {live_gateway.settings.instance_id}, "a standalone gateway serves every agency"


def test_a_strict_stub_built_from_the_wsdl_before_home_instances_still_lists_agencies(
    live_gateway, tmp_path: Path
) -> None:
    """getAgencies' homeInstance is an addition: zeep's default strict parser, built from the WSDL as it
    was before it, refuses an element it does not know, so the gateway must not send it unasked."""
    published = (WSDL_DIR / "edxml-gateway.wsdl").read_text(encoding="utf-8")
    additions = ('<xs:element name="homeInstance"', '<xs:element name="includeHomeInstance"')
    earlier = "".join(line for line in published.splitlines(keepends=True) if not line.strip().startswith(additions))
    assert earlier.count("\n") == published.count("\n") - 2, "both additions are single lines of the WSDL"
    path = tmp_path / "earlier.wsdl"
    path.write_text(earlier.replace("http://localhost:8080/soap", live_gateway.url), encoding="utf-8")
    client = zeep.Client(str(path), settings=zeep.Settings(strict=True))
    header = client.get_element(f"{{{NS}}}AuthHeader")(agencyCode=NGHE_AN, secret=secret_of(NGHE_AN))
    agencies = client.service.getAgencies(_soapheaders=[header])
    assert VPCP in {a.code for a in agencies}


def test_get_documents_fetches_a_batch_as_get_document_fetches_each(client_for, live_gateway) -> None:
    """The batch answer streams every file in the order asked, byte for byte; a bad id refuses the whole batch."""
    vpcp, nghe_an, cao_bang = client_for(VPCP), client_for(NGHE_AN), client_for(CAO_BANG)
    sent = {}
    for number in ("1", "2", "3"):
        letter = official_letter(VPCP, [NGHE_AN, CAO_BANG], number=number)
        sent[vpcp.service.sendDocument(document=letter).documentId] = letter
    mine = [i.itemId for i in _items(nghe_an)]
    foreign = _items(cao_bang)[0].itemId
    with pytest.raises(zeep.exceptions.Fault) as refused:
        nghe_an.service.getDocuments(itemIds={"string": [mine[0], foreign]})
    assert refused.value.code.split(":", 1)[1] == "Client.NotFound" and foreign in refused.value.message
    with live_gateway.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.fetched_at.is_not(None))) == 0
    asked = [mine[2], mine[0], mine[1]]
    fetched = nghe_an.service.getDocuments(itemIds={"string": asked})
    assert [f.itemId for f in fetched] == asked
    for f in fetched:
        assert f.edxml == sent[f.documentId] and f.size == len(f.edxml)
        assert f.sha256 == hashlib.sha256(f.edxml).hexdigest()
    again = nghe_an.service.getDocument(itemId=mine[1])
    assert again.edxml == sent[again.documentId]
    statuses = [i.itemId for i in _items(vpcp) if i.kind == "status"]
    arrived = vpcp.service.getDocuments(itemIds={"string": statuses})
    assert sorted(read_status(s.edxml).status_code for s in arrived) == ["01", "01", "01"]


def test_confirm_received_items_acknowledges_a_batch(client_for, live_gateway) -> None:
    vpcp, nghe_an, cao_bang = client_for(VPCP), client_for(NGHE_AN), client_for(CAO_BANG)
    for number in ("1", "2", "3"):
        vpcp.service.sendDocument(document=official_letter(VPCP, [NGHE_AN, CAO_BANG], number=number))
    mine = [i.itemId for i in _items(nghe_an)]
    foreign = _items(cao_bang)[0].itemId
    with pytest.raises(zeep.exceptions.Fault) as refused:
        nghe_an.service.confirmReceivedItems(itemIds={"string": [mine[0], foreign]})
    assert refused.value.code.split(":", 1)[1] == "Client.NotFound" and foreign in refused.value.message
    with live_gateway.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.state == "acked")) == 0
    assert nghe_an.service.confirmReceivedItems(itemIds={"string": mine}) == 3
    assert nghe_an.service.confirmReceivedItems(itemIds={"string": mine}) == 0, "acknowledging again is harmless"
    assert nghe_an.service.confirmReceived(itemId=mine[0]) is True
    assert _items(nghe_an, maxItems=50) == []
