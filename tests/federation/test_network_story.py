"""The main story across the network (docs: FEDERATION design, "Test harness interface").

A commune of province A sends ONE document to a department of province B (two hops), to a
ministry at the national hub (one hop) and to another commune of A (local). Each recipient pulls
it at its own home instance, byte for byte, acknowledges and reports; the sender follows every
copy at A exactly as if all recipients were local, and gets their status messages.
"""

from __future__ import annotations

from collections import Counter

from harness import (
    A_COMMUNE,
    A_COMMUNE_2,
    B_DEPARTMENT,
    HA,
    HB,
    MINISTRY,
    NATIONAL,
    Inbox,
    Network,
    history_by_recipient,
    sha256,
    wait_until,
)
from support.letters import official_letter

from gateway.edxml import read_status

RECIPIENTS = [B_DEPARTMENT, MINISTRY, A_COMMUNE_2]
PLAN = {  # what each recipient reports after fetching, and the history the sender must then see
    B_DEPARTMENT: [("03", "Đã vào sổ"), ("04", "Giao phòng Bưu chính"), ("05", "Đang xử lý"), ("06", "Hoàn thành")],
    MINISTRY: [("02", "Không thuộc thẩm quyền của Bộ")],
    A_COMMUNE_2: [("03", "Đã vào sổ"), ("06", "Hoàn thành")],
}
WAIT = 45


def test_one_document_to_three_places_is_followed_at_the_sender_like_local_ones(network: Network) -> None:
    sender = network.client(A_COMMUNE)
    assert B_DEPARTMENT in {a.code for a in sender.service.getAgencies()}, "directory synchronised before sending"
    edxml = official_letter(A_COMMUNE, RECIPIENTS, attachment=b"%PDF-1.4 " + bytes(range(256)) * 400)
    receipt = sender.service.sendDocument(document=edxml)
    assert receipt.duplicate is False
    assert sorted(receipt.recipients.string) == sorted(RECIPIENTS)
    document_id = receipt.documentId

    copies: dict[str, str] = {}
    for code in RECIPIENTS:
        client = network.client(code)
        inbox = Inbox(client)
        (item,) = inbox.wait_for(
            lambda items: any(i.kind == "document" for i in items), WAIT, f"the document in {code}'s pending list"
        )
        assert (item.kind, item.senderCode, item.code) == ("document", A_COMMUNE, "7816/VPCP-TTĐT")
        assert item.edxmlDocumentId == receipt.edxmlDocumentId
        fetched = client.service.getDocument(itemId=item.itemId)
        assert fetched.edxml == edxml, f"{code} received other bytes than were sent"
        assert fetched.sha256 == sha256(edxml) and fetched.size == len(edxml)
        assert client.service.confirmReceived(itemId=item.itemId) is True
        copies[code] = item.documentId
        for status, text in PLAN[code]:
            answer = client.service.updateStatus(
                documentId=item.documentId,
                statusCode=status,
                description=text,
                staff={"department": "Văn thư", "staff": f"Cán bộ {code}"},
            )
            assert answer.statusCode == status
        own = history_by_recipient(client, item.documentId)
        assert own == {code: ["01", *(s for s, _ in PLAN[code])]}, f"{code} sees its own copy's history only"
        assert inbox.poll() == [], f"{code} got something more than the one document"
    assert copies[A_COMMUNE_2] == document_id, "the local recipient shares the sender instance's document"

    expected = {code: ["01", *(s for s, _ in plan)] for code, plan in PLAN.items()}
    history = wait_until(
        lambda: (h := history_by_recipient(sender, document_id)) == expected and h,
        WAIT,
        f"the sender's history at A to become {expected}",
    )
    assert history == expected
    entries = list(sender.service.getStatusHistory(documentId=document_id))
    for code, plan in PLAN.items():
        mine = [e for e in entries if e.recipientCode == code]
        assert {e.reportedBy for e in mine} == {code}, f"{code}'s statuses are reported by {code} itself"
        assert [e.reportedAt for e in mine] == sorted(e.reportedAt for e in mine)
        assert [(e.statusCode, e.description) for e in mine[1:]] == plan
        assert {e.staffName for e in mine[1:]} == {f"Cán bộ {code}"}

    outbox = Inbox(sender)
    want = Counter((code, status) for code, statuses in expected.items() for status in statuses)
    outbox.wait_for(
        lambda items: Counter((i.statusFrom, i.statusCode) for i in items if i.kind == "status") == want,
        WAIT,
        f"the sender's pending list to hold the status messages {sorted(want)}",
    )
    for item in outbox.statuses():
        message = read_status(sender.service.getDocument(itemId=item.itemId).edxml)
        assert (message.sender.organ_id, message.status_code) == (item.statusFrom, item.statusCode)
        assert message.response_for.document_id == receipt.edxmlDocumentId
        assert message.response_for.organ_id == A_COMMUNE
        assert sender.service.confirmReceived(itemId=item.itemId) is True
    assert Inbox(sender).poll() == [], "nothing more for the sender"

    for instance_id in (HA, NATIONAL, HB):
        stored = network[instance_id].scalar("SELECT count(*) FROM documents")
        assert stored == 1, f"{instance_id} stores the document once, found {stored} rows"

    hops = {HA: (NATIONAL, [B_DEPARTMENT, MINISTRY]), NATIONAL: (HB, [B_DEPARTMENT])}
    for instance_id, (next_hop, served) in hops.items():
        instance = network[instance_id]
        rows = instance.scalar("SELECT count(*) FROM relay_outbox WHERE kind = 'document'")
        assert rows == 1, f"{instance_id} sends the document as one consignment, found {rows}"
        hop = instance.scalar("SELECT next_hop FROM relay_outbox WHERE kind = 'document'")
        listed = instance.scalar("SELECT recipients FROM relay_outbox WHERE kind = 'document'")
        assert hop == next_hop and all(code in listed for code in served), (instance_id, hop, listed)
        assert A_COMMUNE_2 not in listed, "a local recipient never travels"
    assert network[HB].scalar("SELECT count(*) FROM relay_outbox WHERE kind = 'document'") == 0
    for instance_id in (NATIONAL, HB):
        received = network[instance_id].scalar("SELECT count(*) FROM relay_inbound WHERE kind = 'document'")
        assert received == 1, f"{instance_id} took custody of the document once, found {received}"
