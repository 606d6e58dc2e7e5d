"""Custody across hops: nothing lost, nothing delivered twice, whatever stops when.

The national hub goes away while province A keeps accepting documents; relays are SIGKILLed at
random moments while large documents flow. Each recipient must end with every document exactly
once, and every instance must have stored each document once.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
from harness import (
    A_COMMUNE,
    B_DEPARTMENT,
    HA,
    HB,
    MINISTRY,
    NATIONAL,
    Inbox,
    Network,
    fetch_and_ack,
    sha256,
    wait_until,
)
from support.letters import official_letter


def drain(network: Network, code: str, expected: dict[str, str], timeout: float) -> Counter[str]:
    """Pull, fetch and acknowledge at ``code``'s home until every expected DocumentId came; then keep
    polling for a quiet while so that a late duplicate would be seen too. Returns how often each came."""
    client = network.client(code)
    inbox = Inbox(client)
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    while set(seen) < set(expected) and time.monotonic() < deadline:
        new = inbox.poll()
        for item, edxml in zip(new, fetch_and_ack(client, new), strict=True):
            assert item.kind == "document", f"{code} got an unexpected {item.kind} item"
            document_id = item.edxmlDocumentId
            assert sha256(edxml) == expected.get(document_id), f"{code} got other bytes for {document_id}"
            seen[document_id] += 1
        if not new:
            time.sleep(0.2)
    missing = set(expected) - set(seen)
    assert not missing, f"{code} never received {len(missing)} of {len(expected)} documents: {sorted(missing)}"
    quiet_until = time.monotonic() + 3
    while time.monotonic() < quiet_until:
        late = inbox.poll()
        assert not late, f"{code} received again after acknowledging: {[i.edxmlDocumentId for i in late]}"
        time.sleep(0.3)
    return seen


def send_all(network: Network, documents: list[bytes], pause: float = 0) -> dict[str, str]:
    """Send each document from A's commune (``pause`` seconds apart); DocumentId -> sha256 of what was sent."""
    sender = network.client(A_COMMUNE)
    sent = {}
    for edxml in documents:
        time.sleep(pause)
        receipt = sender.service.sendDocument(document=edxml)
        assert receipt.duplicate is False
        sent[receipt.edxmlDocumentId] = sha256(edxml)
    return sent


def count(network: Network, instance_id: str, sql: str) -> Any:
    return network[instance_id].scalar(sql)


@pytest.mark.slow
def test_national_hub_down_while_a_keeps_accepting(network: Network) -> None:
    national = network.national
    national.stop()
    documents = [official_letter(A_COMMUNE, [B_DEPARTMENT, MINISTRY], number=f"{100 + n}") for n in range(8)]
    sent = send_all(network, documents)
    time.sleep(2)  # the relay at A tries, and fails, meanwhile
    waiting = count(network, HA, "SELECT count(*) FROM relay_outbox WHERE kind = 'document' AND state <> 'delivered'")
    assert waiting == len(documents), f"A holds every document for the hub, found {waiting} undelivered"

    national.start_serve()
    national.start_relay()
    for code in (B_DEPARTMENT, MINISTRY):
        seen = drain(network, code, sent, timeout=60)
        assert set(seen.values()) == {1}, f"{code} received some documents more than once: {seen}"
    for instance_id in (HA, NATIONAL, HB):
        stored = count(network, instance_id, "SELECT count(*) FROM documents")
        assert stored == len(documents), f"{instance_id} stored {stored} documents, {len(documents)} were sent"
    assert count(network, HA, "SELECT count(*) FROM relay_outbox WHERE state <> 'delivered'") == 0


@pytest.mark.slow
def test_relays_killed_mid_transfer_lose_nothing_and_duplicate_nothing(network: Network) -> None:
    seed = int(os.environ.get("FEDERATION_KILL_SEED") or time.time())
    chance = random.Random(seed)
    documents = [
        official_letter(A_COMMUNE, [B_DEPARTMENT], number=f"{200 + n}", attachment=os.urandom(1_500_000))
        for n in range(20)
    ]
    sent: dict[str, str] = {}
    failures: list[BaseException] = []

    def sender() -> None:
        try:
            sent.update(send_all(network, documents, pause=0.4))  # documents keep flowing while relays die
        except BaseException as exc:  # re-raised in the test thread
            failures.append(exc)

    def in_flight(victim: str) -> int:
        """Consignments the victim's relay is working on: A pushes its outbox; B pulls national's rows for B."""
        if victim == HA:
            return count(network, HA, "SELECT count(*) FROM relay_outbox WHERE state IN ('waiting', 'sending')")
        return count(
            network,
            NATIONAL,
            f"SELECT count(*) FROM relay_outbox WHERE next_hop = '{HB}' AND state IN ('waiting', 'sending')",
        )

    thread = threading.Thread(target=sender)
    thread.start()
    killed = []
    for victim_id in chance.sample([HA, HB, HA, HB, NATIONAL], 5):
        wait_until(lambda v=victim_id: in_flight(v), 60, f"consignments in flight for the relay of {victim_id}", 0.05)
        time.sleep(chance.uniform(0, 0.3))
        victim = network[victim_id]
        assert victim.relay is not None
        victim.relay.kill()
        killed.append(victim_id)
        victim.start_relay()
    thread.join(timeout=120)
    assert not failures, failures
    assert len(sent) == len(documents)

    seen = drain(network, B_DEPARTMENT, sent, timeout=90)
    assert set(seen.values()) == {1}, f"seed {seed}, relays killed {killed}: duplicates {seen}"
    for instance_id in (HA, NATIONAL, HB):
        stored = count(network, instance_id, "SELECT count(*) FROM documents")
        assert stored == len(documents), f"seed {seed}: {instance_id} stored {stored} documents"
    for instance_id in (NATIONAL, HB):
        received = count(network, instance_id, "SELECT count(*) FROM relay_inbound WHERE kind = 'document'")
        assert received == len(documents), f"seed {seed}: {instance_id} took custody {received} times"
    for instance_id in (HA, NATIONAL):
        failed = count(network, instance_id, "SELECT count(*) FROM relay_outbox WHERE state = 'failed'")
        assert failed == 0, f"seed {seed}: {instance_id} gave up on {failed} consignments"
