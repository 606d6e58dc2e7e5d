"""Two gateway nodes on one PostgreSQL database and one blob directory, behind nginx, one of them SIGKILLed.

Each node is ``edxml-gateway serve --workers 2 --port P`` (its own gunicorn, its own process group)
with the same ``GATEWAY_DATABASE_URL`` and ``GATEWAY_BLOB_DIR``; nginx runs the shipped
``deploy/nginx/several-nodes.conf``. Senders and pullers go through nginx. Midway, one agency's
items are leased directly on node B and never acknowledged, and node B's whole process group is
SIGKILLed. Afterwards: every acknowledged send was delivered byte-identical and acknowledged, no
item was ever leased to two pullers at once, no (sender, DocumentId) is stored twice, the audit
chain verifies, node B's leases came back after their expiry, and nginx kept answering.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from nodes_support import Balancer, Node, SoapError, call, document_b64, items_of, nginx_binary, prepare_store, text_of
from sqlalchemy import func, select
from support.letters import official_letter

from gateway.store import audit
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Document

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

VPCP, NGHE_AN, CAO_BANG, HAU_GIANG = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.H30"
LEASE_SECONDS = 3
LOAD_SECONDS = 5


@dataclass
class Ledger:
    """What the clients saw, shared by their threads."""

    sent: dict[str, str] = field(default_factory=dict)
    """edXML DocumentId -> sha256 of the bytes sent, for every send that got a receipt."""
    receipts: dict[str, str] = field(default_factory=dict)
    """edXML DocumentId -> the gateway's documentId."""
    expected: set[tuple[str, str]] = field(default_factory=set)
    """(recipient, documentId) that must be delivered."""
    delivered: set[tuple[str, str]] = field(default_factory=set)
    grants: dict[str, list[tuple[datetime, int, str]]] = field(default_factory=lambda: defaultdict(list))
    """itemId -> [(leaseExpiresAt, attempts, who)]."""
    problems: list[str] = field(default_factory=list)
    unknown_outcomes: int = 0
    calls_after_kill: int = 0
    killed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problem(self, message: str) -> None:
        with self.lock:
            self.problems.append(message)


class Load:
    """Sender and puller threads speaking raw SOAP through the balancer."""

    def __init__(self, url: str, secrets: dict[str, str], ledger: Ledger) -> None:
        self.url = url
        self.secrets = secrets
        self.ledger = ledger
        self.stop_sending = threading.Event()
        self.stop_pulling = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self.threads.append(thread)

    def sender(self, name: str) -> None:
        n = 0
        while not self.stop_sending.is_set():
            n += 1
            recipients = [NGHE_AN, CAO_BANG] + ([HAU_GIANG] if n % 3 == 0 else [])
            data = official_letter(VPCP, recipients, number=f"{name}{n:05d}")
            edxml_id = f"{VPCP},2026/11/20,{name}{n:05d}/VPCP-TTĐT"
            document_id = self.send_until_acknowledged(data)
            if document_id is None:
                self.ledger.problem(f"{edxml_id}: no receipt within 60 s")
                continue
            with self.ledger.lock:
                self.ledger.sent[edxml_id] = hashlib.sha256(data).hexdigest()
                self.ledger.receipts[edxml_id] = document_id
                self.ledger.expected.update((r, document_id) for r in recipients)
            if n % 4 == 0:  # a client that lost the receipt sends again: same document, stored once
                again = self.send_until_acknowledged(data, want_duplicate=True)
                if again != document_id:
                    self.ledger.problem(f"{edxml_id}: resend answered {again}, first receipt {document_id}")

    def send_until_acknowledged(self, data: bytes, want_duplicate: bool = False) -> str | None:
        """Send, retrying an unknown outcome (502, cut connection) with the same bytes: the gateway dedups."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                receipt = call(self.url, VPCP, self.secrets[VPCP], "sendDocument", document_b64(data))
            except SoapError as error:
                if error.fault is not None and not error.fault.startswith("Server."):
                    self.ledger.problem(f"sendDocument refused: {error}")
                    return None
                with self.ledger.lock:
                    self.ledger.unknown_outcomes += 1
                time.sleep(0.2)
                continue
            self.count_call()
            if want_duplicate and text_of(receipt, "duplicate") != "true":
                self.ledger.problem("a resend was not reported as a duplicate")
            return text_of(receipt, "documentId")
        return None

    def count_call(self) -> None:
        with self.ledger.lock:
            if self.ledger.killed:
                self.ledger.calls_after_kill += 1

    def puller(self, agency: str, url: str | None = None) -> None:
        secret = self.secrets[agency]
        url = url or self.url
        while not self.stop_pulling.is_set():
            try:
                listing = call(url, agency, secret, "getPendingDocuments", "<g:maxItems>3</g:maxItems>")
            except SoapError:
                time.sleep(0.2)
                continue
            self.count_call()
            items = items_of(listing)
            if not items:
                time.sleep(0.2)
                continue
            self.record_grants(agency, items)
            for item in items:
                self.deliver(agency, secret, url, item)

    def acknowledge(self, agency: str, secret: str, url: str, inner: str) -> bool:
        """Acknowledge, retrying an unknown outcome as the README tells clients to.

        The node that committed the acknowledgement may die before answering (nginx then answers
        502): the item is gone from the queue, so giving up here would leave a document the client
        holds counted as undelivered. Acknowledging twice is harmless (the first ``acked_at`` stays).
        """
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                call(url, agency, secret, "confirmReceived", inner)
                return True
            except SoapError as error:
                if error.fault is not None and not error.fault.startswith("Server."):
                    return False  # refused (e.g. the lease ran out and another puller has it)
                time.sleep(0.2)
        return False

    def record_grants(self, who: str, items: list[dict[str, str]]) -> None:
        with self.ledger.lock:
            for item in items:
                lease = datetime.fromisoformat(item["leaseExpiresAt"])
                self.ledger.grants[item["itemId"]].append((lease, int(item["attempts"]), who))

    def deliver(self, agency: str, secret: str, url: str, item: dict[str, str]) -> None:
        inner = f"<g:itemId>{item['itemId']}</g:itemId>"
        try:
            fetched = call(url, agency, secret, "getDocument", inner)
        except SoapError:
            return  # the lease runs out and the item comes back
        data = base64.b64decode(text_of(fetched, "edxml") or "")
        if not self.acknowledge(agency, secret, url, inner):
            return
        self.count_call()
        with self.ledger.lock:
            expected = self.ledger.sent.get(item["edxmlDocumentId"])
        if item["kind"] != "document":
            return
        if expected is None:
            # The receipt may still be on its way back to the sender (or lost and being retried).
            deadline = time.monotonic() + 60
            while expected is None and time.monotonic() < deadline:
                time.sleep(0.1)
                with self.ledger.lock:
                    expected = self.ledger.sent.get(item["edxmlDocumentId"])
        if hashlib.sha256(data).hexdigest() != expected:
            self.ledger.problem(f"{item['edxmlDocumentId']} delivered to {agency} with other bytes")
        with self.ledger.lock:
            self.ledger.delivered.add((agency, item["documentId"]))


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str):  # type: ignore[no-untyped-def]
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    secrets = prepare_store(pg_url, [VPCP, NGHE_AN, CAO_BANG, HAU_GIANG])
    env = {
        "GATEWAY_DATABASE_URL": pg_url,
        "GATEWAY_BLOB_DIR": str(tmp_path / "shared-blobs"),
        "GATEWAY_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    nodes = [Node(name, tmp_path / name, env).start() for name in ("node-a", "node-b")]
    balancer = Balancer(tmp_path / "nginx", [node.port for node in nodes])
    try:
        for node in nodes:
            node.wait_healthy()
        balancer.start()
        yield nodes, balancer, secrets
    finally:
        balancer.stop()
        for node in nodes:
            node.stop()


def test_two_nodes_behind_nginx_survive_losing_one(cluster, pg_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (node_a, node_b), balancer, secrets = cluster
    ledger = Ledger()
    load = Load(balancer.url, secrets, ledger)
    for name in ("A", "B"):
        load.start(load.sender, name)
    for agency in (NGHE_AN, NGHE_AN, CAO_BANG, CAO_BANG):
        load.start(load.puller, agency)
    time.sleep(LOAD_SECONDS)

    # Hậu Giang's items are leased on node B itself, and node B dies before anyone fetches them.
    doomed = items_of(
        call(node_b.url, HAU_GIANG, secrets[HAU_GIANG], "getPendingDocuments", "<g:maxItems>50</g:maxItems>")
    )
    assert doomed, "Hậu Giang had items waiting"
    load.record_grants("node-b-client", doomed)
    node_b.kill()
    with ledger.lock:
        ledger.killed = True
    killed_at = time.monotonic()

    # The balancer keeps answering: every call from now on goes to node A. A POST nginx had already
    # written to a kept-alive connection of node B cannot be replayed by the proxy (not idempotent):
    # that caller gets one 502 and retries, as the README tells clients to.
    gateway_errors = 0
    for _ in range(20):
        try:
            agencies = call(balancer.url, VPCP, secrets[VPCP], "getAgencies", f"<g:parentCode>{NGHE_AN}</g:parentCode>")
        except SoapError as error:
            assert "HTTP 502" in str(error), error
            gateway_errors += 1
            continue
        assert text_of(agencies, "code")
    assert gateway_errors <= 2, f"{gateway_errors} of 20 calls after the kill got a 502"
    load.start(load.puller, HAU_GIANG)
    time.sleep(LOAD_SECONDS)
    load.stop_sending.set()
    for sender in load.threads[:2]:
        sender.join(90)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with ledger.lock:
            if ledger.expected <= ledger.delivered:
                break
        time.sleep(0.2)
    load.stop_pulling.set()
    for thread in load.threads:
        thread.join(60)

    assert not ledger.problems, ledger.problems[:5]
    missing = ledger.expected - ledger.delivered
    assert not missing, f"{len(missing)} acknowledged sends never delivered, e.g. {sorted(missing)[:3]}"
    assert len(ledger.sent) > 10 and ledger.calls_after_kill > 20
    assert time.monotonic() - killed_at > LEASE_SECONDS

    lease = timedelta(seconds=LEASE_SECONDS)
    for item_id, grants in ledger.grants.items():
        ordered = sorted(grants)
        for (earlier, _, first), (later, _, second) in pairwise(ordered):
            assert later - lease >= earlier, f"{item_id} leased to {second} while {first} held it"
    for item in doomed:
        again = [g for g in ledger.grants[item["itemId"]] if g[2] != "node-b-client"]
        assert again and min(g[1] for g in again) >= 2, f"{item['itemId']} leased on node B never came back"
        assert (HAU_GIANG, item["documentId"]) in ledger.delivered

    db = Database(pg_url)
    try:
        with db.transaction(readonly=True) as session:
            doubles = session.execute(
                select(Document.sender_id, Document.edxml_document_id)
                .group_by(Document.sender_id, Document.edxml_document_id)
                .having(func.count() > 1)
            ).all()
            stored = dict(session.execute(select(Document.edxml_document_id, Document.blob_sha256)).all())
        with db.transaction() as session:
            chain = audit.verify(session)
    finally:
        db.dispose()
    assert doubles == []
    assert set(stored) == set(ledger.sent), "exactly the acknowledged sends are stored"
    blobs = BlobStore(tmp_path / "shared-blobs")
    assert all(stored[key] == ledger.sent[key] and blobs.verify(stored[key]) for key in stored)
    assert chain.ok, chain
    assert node_a.running, "node A is still serving"
    print(
        f"\n{len(ledger.sent)} documents, {len(ledger.delivered)} deliveries, {len(doomed)} leases lost with node B "
        f"and redelivered, {ledger.unknown_outcomes} sends retried after an unknown outcome, "
        f"{ledger.calls_after_kill} calls answered after the kill"
    )
