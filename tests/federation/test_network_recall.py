"""A recall (13) from a commune of A crosses two hops to province B (docs: FEDERATION design, "Statuses
and recall across tiers"): the copy B's department never fetched is withdrawn and answered 15 by
the gateway; the copies that were fetched get the 13 in their pending list and their answers
(15 agreed, 16 refused) come back to the sender's history at A.
"""

from __future__ import annotations

from collections import Counter

from harness import A_COMMUNE, B_COMMUNE, B_DEPARTMENT, B_UBND, Inbox, Network, history_by_recipient, wait_until
from support.letters import official_letter

from gateway.edxml import read_status

WAIT = 45


def test_recall_withdraws_unfetched_copies_two_hops_away_and_brings_answers_back(network: Network) -> None:
    sender = network.client(A_COMMUNE)
    receipt = sender.service.sendDocument(document=official_letter(A_COMMUNE, [B_DEPARTMENT, B_UBND, B_COMMUNE]))
    document_id = receipt.documentId

    copies: dict[str, str] = {}
    for code in (B_UBND, B_COMMUNE):
        client = network.client(code)
        (item,) = Inbox(client).wait_for(bool, WAIT, f"the document at {code}")
        client.service.getDocument(itemId=item.itemId)
        assert client.service.confirmReceived(itemId=item.itemId) is True
        copies[code] = item.documentId
    wait_until(
        lambda: history_by_recipient(sender, document_id) == {B_UBND: ["01"], B_COMMUNE: ["01"]},
        WAIT,
        "both fetches (01) to reach the sender's history at A",
    )

    sender.service.updateStatus(documentId=document_id, statusCode="13", description="Ban hành nhầm")

    def withdrawn() -> list:
        entries = [e for e in sender.service.getStatusHistory(documentId=document_id) or []]
        mine = [e for e in entries if e.recipientCode == B_DEPARTMENT]
        return mine if mine and mine[-1].statusCode == "15" else []

    entries = wait_until(withdrawn, WAIT, "the gateway's 15 for B's unfetched department copy at A")
    assert "01" not in [e.statusCode for e in entries], "the department never fetched its copy"
    assert "gateway" in (entries[-1].description or "").lower(), entries[-1]
    assert Inbox(network.client(B_DEPARTMENT)).poll() == [], "a withdrawn copy leaves the pending list"

    answers = {B_UBND: ("15", "Đã hủy văn bản"), B_COMMUNE: ("16", "Đã xử lý xong một phần")}
    for code, (answer, reason) in answers.items():
        client = network.client(code)
        inbox = Inbox(client)
        (notice,) = inbox.wait_for(bool, WAIT, f"the 13 in {code}'s pending list")
        assert (notice.kind, notice.statusCode, notice.statusFrom) == ("status", "13", A_COMMUNE)
        message = read_status(client.service.getDocument(itemId=notice.itemId).edxml)
        assert (message.status_code, message.sender.organ_id, message.description) == ("13", A_COMMUNE, "Ban hành nhầm")
        assert message.response_for.document_id == receipt.edxmlDocumentId
        assert client.service.confirmReceived(itemId=notice.itemId) is True
        client.service.updateStatus(documentId=copies[code], statusCode=answer, description=reason)
    network.client(B_COMMUNE).service.updateStatus(documentId=copies[B_COMMUNE], statusCode="04")

    expected_tail = {B_UBND: ["01", "13", "15"], B_COMMUNE: ["01", "13", "16", "04"]}
    history = wait_until(
        lambda: (
            (h := history_by_recipient(sender, document_id)).get(B_UBND) == expected_tail[B_UBND]
            and h.get(B_COMMUNE) == expected_tail[B_COMMUNE]
            and h
        ),
        WAIT,
        f"the answers {expected_tail} at A",
    )
    assert history[B_DEPARTMENT][-1] == "15"

    statuses = Inbox(sender).wait_for(
        lambda items: (
            {("15", B_UBND), ("16", B_COMMUNE), ("15", B_DEPARTMENT)} <= {(i.statusCode, i.statusFrom) for i in items}
        ),
        WAIT,
        "the recall answers in the sender's pending list",
    )
    counted = Counter((i.statusFrom, i.statusCode) for i in statuses)
    assert all(n == 1 for n in counted.values()), f"a status message came twice: {counted}"
