"""A consignment that cannot be delivered ends ``failed`` after its attempts, the sender sees a delivery
report of the gateway (code 90, never a recipient's status), and the operator requeues it once the
next hop is back (docs: FEDERATION design, "Custody and exactly-once", "Statuses and recall").
"""

from __future__ import annotations

import json

import pytest
from harness import A_COMMUNE, HA, MINISTRY, Inbox, Network, history_by_recipient, wait_until
from support.letters import official_letter


@pytest.mark.slow
def test_undeliverable_consignment_is_reported_to_the_sender_and_requeued_by_the_operator(make_network) -> None:
    network: Network = make_network(extra_env={"GATEWAY_RELAY_MAX_ATTEMPTS": "2"})
    network.wait_for_directory()
    province, national = network[HA], network.national
    national.stop()

    sender = network.client(A_COMMUNE)
    edxml = official_letter(A_COMMUNE, [MINISTRY], number="9090")
    document_id = sender.service.sendDocument(document=edxml).documentId

    def report() -> list:
        entries = sender.service.getStatusHistory(documentId=document_id) or []
        return [e for e in entries if e.recipientCode == MINISTRY and e.statusCode == "90"]

    (entry,) = wait_until(report, 60, "the gateway's delivery report (90) in the sender's history")
    assert entry.reportedBy == f"gateway:{HA}", entry
    assert entry.statusName.startswith("not delivered (relay failed after 2 attempts)"), entry.statusName

    failed = json.loads(province.cli("relay", "failed", "--json"))
    assert [(f["next_hop"], f["kind"], f["recipients"], f["attempts"]) for f in failed] == [
        ("national", "document", [MINISTRY], 2)
    ], failed

    national.start_serve()
    national.start_relay()
    assert "Requeued" in province.cli("relay", "requeue", failed[0]["consignment"])
    assert province.scalar("SELECT count(*) FROM audit_log WHERE action = 'relay_requeue'") == 1

    ministry = network.client(MINISTRY)
    (item,) = Inbox(ministry).wait_for(bool, 60, "the requeued document at the ministry")
    assert ministry.service.getDocument(itemId=item.itemId).edxml == edxml
    assert ministry.service.confirmReceived(itemId=item.itemId) is True
    history = wait_until(
        lambda: (h := history_by_recipient(sender, document_id)).get(MINISTRY) == ["90", "01"] and h,
        45,
        "the ministry's 01 after the delivery report",
    )
    assert history == {MINISTRY: ["90", "01"]}
    assert json.loads(province.cli("relay", "failed", "--json")) == []
