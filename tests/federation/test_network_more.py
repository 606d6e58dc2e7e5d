"""More of the network with real processes: the sender's own instance restarting with consignments
piled up, an update (BussinessDocType 2) crossing two hops, and each instance's audit chain after it.

Province A (``HA``) sends; B (``HB``) and the national hub receive. Agencies speak the agency WSDL
at their home instance; the databases are only read, to count what was stored and to follow a
document through each instance's audit chain.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from harness import (
    A_COMMUNE,
    B_DEPARTMENT,
    B_UBND,
    HA,
    HB,
    MINISTRY,
    NATIONAL,
    Inbox,
    Instance,
    Network,
    fetch_and_ack,
    history_by_recipient,
    sha256,
    wait_until,
)
from support.letters import official_letter

from gateway.edxml import Business

WAIT = 45


def send(network: Network, documents: list[bytes]) -> dict[str, bytes]:
    """Send each document from A's commune at A; DocumentId -> the bytes sent."""
    sender = network.client(A_COMMUNE)
    sent = {}
    for edxml in documents:
        receipt = sender.service.sendDocument(document=edxml)
        assert receipt.duplicate is False
        sent[receipt.edxmlDocumentId] = edxml
    return sent


def receive_all(network: Network, codes: list[str], sent: dict[str, bytes], timeout: float) -> None:
    """Each of ``codes`` pulls, fetches and acknowledges at its home until it has every sent document,
    each exactly once and byte for byte; then all keep polling a quiet while, so a late repeat is seen."""
    inboxes = {code: Inbox(network.client(code)) for code in codes}
    seen: dict[str, Counter[str]] = {code: Counter() for code in codes}
    deadline = time.monotonic() + timeout
    while any(set(seen[code]) < set(sent) for code in codes) and time.monotonic() < deadline:
        idle = True
        for code, inbox in inboxes.items():
            new = inbox.poll()
            idle = idle and not new
            for item, edxml in zip(new, fetch_and_ack(inbox.client, new), strict=True):
                assert item.kind == "document", f"{code} got an unexpected {item.kind} item"
                assert item.edxmlDocumentId in sent, f"{code} got a document nobody sent: {item.edxmlDocumentId}"
                assert edxml == sent[item.edxmlDocumentId], f"{code} got other bytes for {item.edxmlDocumentId}"
                seen[code][item.edxmlDocumentId] += 1
        if idle:
            time.sleep(0.3)
    for code in codes:
        missing = sorted(set(sent) - set(seen[code]))
        assert not missing, f"{code} never received {len(missing)} of {len(sent)} documents: {missing}"
        assert set(seen[code].values()) == {1}, f"{code} received some documents more than once: {seen[code]}"
    quiet_until = time.monotonic() + 3
    while time.monotonic() < quiet_until:
        for code, inbox in inboxes.items():
            late = inbox.poll()
            assert not late, f"{code} received again after acknowledging: {[i.edxmlDocumentId for i in late]}"
        time.sleep(0.3)


def document_trail(instance: Instance, origin_document_id: str) -> list[tuple[str, str, str, str]]:
    """The relay_out / relay_in entries of ``instance``'s audit chain about a document A sent, in
    chain order: (action, next hop or sending peer, consignment id, sha256 of the payload)."""
    trail = []
    for action, detail in instance.rows(
        "SELECT action, detail FROM audit_log WHERE action IN ('relay_out', 'relay_in') ORDER BY id"
    ):
        entry = json.loads(detail)
        if entry.get("kind") == "document" and entry.get("origin") == [HA, origin_document_id]:
            peer = entry["next_hop"] if action == "relay_out" else entry["from"]
            trail.append((action, peer, entry["consignment"], entry["sha256"]))
    return trail


def assert_audited_across_the_network(network: Network, documents: dict[str, str]) -> None:
    """Every instance's audit chain verifies (``edxml-gateway audit verify``), and follows each of
    ``documents`` (A's documentId -> sha256) A -> national -> B: relay_out at A, relay_in then
    relay_out at the hub, relay_in at B, each once, the consignment handed over being the one
    the previous hop sent, with the same payload hash throughout."""
    for instance_id in (HA, NATIONAL, HB):
        said = network[instance_id].cli("audit", "verify")
        assert "audit chain intact" in said, f"{instance_id}: {said}"
    for document_id, digest in documents.items():
        at_a = document_trail(network[HA], document_id)
        at_hub = document_trail(network.national, document_id)
        at_b = document_trail(network[HB], document_id)
        assert [(a, p) for a, p, _, _ in at_a] == [("relay_out", NATIONAL)], f"A's trail of {document_id}: {at_a}"
        # The hub's relay_out is chained just before its relay_in: both are written in the one
        # transaction that takes custody, the onward consignment first (as A's relay_out precedes
        # its send entry).
        at_hub.sort()
        assert [(a, p) for a, p, _, _ in at_hub] == [("relay_in", HA), ("relay_out", HB)], (
            f"the hub's trail of {document_id}: {at_hub}"
        )
        assert [(a, p) for a, p, _, _ in at_b] == [("relay_in", NATIONAL)], f"B's trail of {document_id}: {at_b}"
        assert at_hub[0][2] == at_a[0][2], "the hub took in the consignment A sent"
        assert at_b[0][2] == at_hub[1][2], "B took in the consignment the hub sent"
        assert {entry[3] for entry in (*at_a, *at_hub, *at_b)} == {digest}, "the same bytes at every hop"


def undelivered_at_a(network: Network, condition: str = "TRUE") -> int:
    return int(
        network[HA].scalar(
            f"SELECT count(*) FROM relay_outbox WHERE kind = 'document' AND state = 'waiting' AND {condition}"
        )
    )


def test_consignments_piled_up_at_a_survive_restarts_of_a_itself(network: Network) -> None:
    """Nothing leaves A for a while (first its relay is stopped, then the hub is down); A is stopped
    meanwhile, once with SIGTERM and once with SIGKILL, and started again on the same data: every
    document reaches B's department and the ministry exactly once, byte for byte."""
    a, national = network[HA], network.national
    letters = [official_letter(A_COMMUNE, [B_DEPARTMENT, MINISTRY], number=f"{300 + n}") for n in range(6)]

    # 1. A's relay stopped: the sends pile up in A's outbox; then A's serve is stopped too (SIGTERM).
    assert a.relay is not None
    a.relay.stop()
    sent = send(network, letters[:3])
    assert undelivered_at_a(network, "attempts = 0") == 3, "with no relay at A nothing was tried"
    a.stop()

    # 2. The hub down, A back with its relay, which tries and fails; then A loses power (SIGKILL).
    national.stop()
    a.restart()
    sent |= send(network, letters[3:])
    wait_until(
        lambda: undelivered_at_a(network, "attempts > 0") == 6,
        WAIT,
        "A's relay to have tried (and failed) to push each of the six documents to the stopped hub",
    )
    a.kill()

    national.restart()
    a.restart()
    receive_all(network, [B_DEPARTMENT, MINISTRY], sent, timeout=90)

    for instance_id in (HA, NATIONAL, HB):
        stored = network[instance_id].scalar("SELECT count(*) FROM documents")
        assert stored == len(sent), f"{instance_id} stored {stored} documents, {len(sent)} were sent"
    for instance_id in (NATIONAL, HB):
        received = network[instance_id].scalar("SELECT count(*) FROM relay_inbound WHERE kind = 'document'")
        assert received == len(sent), f"{instance_id} took custody {received} times of {len(sent)} documents"
    assert a.scalar("SELECT count(*) FROM relay_outbox WHERE kind = 'document' AND state <> 'delivered'") == 0
    at_a = {document_id: digest for document_id, digest in a.rows("SELECT id, blob_sha256 FROM documents")}
    assert sorted(at_a.values()) == sorted(sha256(edxml) for edxml in sent.values())
    assert_audited_across_the_network(network, at_a)


def test_an_update_two_hops_away_withdraws_the_unfetched_original_and_is_delivered(network: Network) -> None:
    """A's commune sends a letter to two agencies of B; B's UBND fetches it, B's department does not.
    An update (BussinessDocType 2) of it then crosses A -> national -> B: B's department's copy of the
    original is withdrawn there (never listed again; the sender sees the gateway's 15 for it), the
    UBND's fetched copy is left alone, and both get the update."""
    sender = network.client(A_COMMUNE)
    recipients = [B_DEPARTMENT, B_UBND]
    original = official_letter(A_COMMUNE, recipients, number="7816")
    first = sender.service.sendDocument(document=original)

    ubnd = network.client(B_UBND)
    (item,) = Inbox(ubnd).wait_for(bool, WAIT, "the original in B's UBND's pending list")
    assert item.edxmlDocumentId == first.edxmlDocumentId
    assert fetch_and_ack(ubnd, [item]) == [original]
    wait_until(
        lambda: history_by_recipient(sender, first.documentId) == {B_UBND: ["01"]},
        WAIT,
        "the UBND's fetch (01) in the sender's history at A",
    )
    unfetched_at_b = """
        SELECT count(*) FROM deliveries d
        JOIN agencies a ON a.id = d.agency_id JOIN documents doc ON doc.id = d.document_id
        WHERE a.code = :code AND d.kind = 'document' AND d.state = :state AND d.fetched_at IS NULL
          AND doc.edxml_document_id = :edxml_id
    """
    # Seen in B's database, not listed: getPendingDocuments would lease the copy and hide it anyway.
    assert network[HB].scalar(unfetched_at_b, code=B_DEPARTMENT, state="pending", edxml_id=first.edxmlDocumentId) == 1

    update = official_letter(
        A_COMMUNE,
        recipients,
        number="7817",
        business=Business(doc_type=2, document_id=first.edxmlDocumentId, reason="Cập nhật văn bản điện tử"),
    )
    second = sender.service.sendDocument(document=update)
    assert second.duplicate is False and second.edxmlDocumentId != first.edxmlDocumentId

    # Listed only once B stored the update: listing earlier would show (and lease) the original.
    wait_until(
        lambda: network[HB].scalar(
            "SELECT count(*) FROM documents WHERE edxml_document_id = :edxml_id", edxml_id=second.edxmlDocumentId
        ),
        WAIT,
        "B to take custody of the update",
    )
    department = network.client(B_DEPARTMENT)
    inbox = Inbox(department)
    listed = inbox.poll()
    assert [(i.kind, i.edxmlDocumentId) for i in listed] == [("document", second.edxmlDocumentId)], (
        "B's department is offered the update, and no longer the original it never fetched"
    )
    assert fetch_and_ack(department, listed) == [update]
    (update_at_ubnd,) = Inbox(ubnd).wait_for(bool, WAIT, "the update in B's UBND's pending list")
    assert update_at_ubnd.edxmlDocumentId == second.edxmlDocumentId
    assert fetch_and_ack(ubnd, [update_at_ubnd]) == [update]

    history = wait_until(
        lambda: (h := history_by_recipient(sender, first.documentId)).get(B_DEPARTMENT, [None])[-1] == "15" and h,
        WAIT,
        "the gateway's 15 for B's department's unfetched original in the sender's history at A",
    )
    assert history == {B_DEPARTMENT: ["15"], B_UBND: ["01"]}, "only the copy never fetched was withdrawn"
    (withdrawn,) = [e for e in sender.service.getStatusHistory(documentId=first.documentId) if e.statusCode == "15"]
    assert "gateway" in (withdrawn.description or "").lower(), withdrawn
    wait_until(
        lambda: history_by_recipient(sender, second.documentId) == {B_DEPARTMENT: ["01"], B_UBND: ["01"]},
        WAIT,
        "both fetches (01) of the update in the sender's history at A",
    )
    assert network[HB].scalar(unfetched_at_b, code=B_DEPARTMENT, state="withdrawn", edxml_id=first.edxmlDocumentId) == 1
    time.sleep(1)
    assert inbox.poll() == [], "the withdrawn original never comes back to B's department"

    for instance_id in (HA, NATIONAL, HB):
        stored = network[instance_id].scalar("SELECT count(*) FROM documents")
        assert stored == 2, f"{instance_id} stores the original and the update once each, found {stored}"
    assert_audited_across_the_network(network, {first.documentId: sha256(original), second.documentId: sha256(update)})
