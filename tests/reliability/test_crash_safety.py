"""SIGKILL of the whole gateway mid-load loses no acknowledged send and leaves nothing half-written.

``serve --workers 2`` (gunicorn) runs in its own process group while four senders send unique
documents and record every receipt. The group is SIGKILLed while requests are in flight, the
gateway is restarted on the same data dir and database, and the store is audited directly:
every acknowledged send is there with a verifying blob and one delivery per recipient, every
stored document is complete, the audit chain verifies, and the restarted gateway serves them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from reliability_support import (
    CAO_BANG,
    NGHE_AN,
    VPCP,
    GatewayFactory,
    fetch_streaming,
    letter,
    parse_reply,
    send_envelope,
)
from sqlalchemy import func, select
from support.blobs import stored_blobs

from gateway.store import audit
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Delivery, Document, Recipient, StatusEvent

SENDERS = 4


@dataclass
class Load:
    """Receipts the senders got back: documentId -> sha256 of the edXML they sent."""

    acknowledged: dict[str, str] = field(default_factory=dict)
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _sender(url: str, secret: str, load: Load) -> None:
    import hashlib

    session = requests.Session()
    while not load.stop.is_set():
        edxml = letter(VPCP, [NGHE_AN, CAO_BANG], attachment=b"%PDF-1.4 " + bytes(range(256)) * 800)
        try:
            response = session.post(
                url,
                data=send_envelope(edxml, VPCP, secret),
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "sendDocument"},
                timeout=30,
            )
            reply = parse_reply(response.status_code, response.content)
        except (requests.RequestException, AssertionError):
            with load.lock:
                load.errors += 1
            session = requests.Session()
            time.sleep(0.05)
            continue
        if reply.fault_code is None:
            with load.lock:
                load.acknowledged[str(reply.find("documentId"))] = hashlib.sha256(edxml).hexdigest()


def _audit_store(database_url: str, blob_dir: Path, load: Load) -> dict[str, int]:
    """Check the store after the crash; return the counts worth printing."""
    db = Database(database_url)
    blobs = BlobStore(blob_dir)
    try:
        with db.transaction() as session:
            documents = {d.id: d for d in session.scalars(select(Document))}
            for document_id, sha256 in load.acknowledged.items():
                document = documents.get(document_id)
                assert document is not None, f"acknowledged send {document_id} is not stored"
                assert document.blob_sha256 == sha256, "the stored blob is not the document that was sent"
            for document in documents.values():
                assert blobs.verify(document.blob_sha256), f"document {document.id}: blob missing or corrupt"
                recipients = session.scalars(select(Recipient).where(Recipient.document_id == document.id)).all()
                deliveries = session.scalars(
                    select(Delivery).where(Delivery.document_id == document.id, Delivery.kind == "document")
                ).all()
                assert len(recipients) == 2, f"document {document.id} has {len(recipients)} recipients"
                assert sorted(d.agency_id for d in deliveries) == sorted(r.agency_id for r in recipients), (
                    f"document {document.id}: deliveries do not match recipients"
                )
            dangling = session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.document_id.not_in(list(documents) or [""]))
            )
            assert dangling == 0, "deliveries without a document"
            chain = audit.verify(session)
            assert chain.ok, f"audit chain broken at {chain.first_broken_id}: {chain.reason}"
            sends = session.scalar(
                select(func.count()).select_from(audit.AuditEntry).where(audit.AuditEntry.action == "send")
            )
            assert sends == len(documents), "every stored document has exactly one send audit entry"
            referenced = {d.blob_sha256 for d in documents.values()}
            referenced |= {s for s in session.scalars(select(StatusEvent.blob_sha256)) if s}
        stored = set(stored_blobs(blobs))
        leftovers = sum(1 for p in (blob_dir / "tmp").iterdir()) if (blob_dir / "tmp").exists() else 0
        return {
            "acknowledged": len(load.acknowledged),
            "stored": len(documents),
            "orphan_blobs": len(stored - referenced),
            "temp_files": leftovers,
            "failed_or_cut_requests": load.errors,
        }
    finally:
        db.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [3, 25], ids=["early", "later"])
def test_sigkill_mid_load_loses_nothing_acknowledged(
    tmp_path: Path, gateway_process: GatewayFactory, db_url: str, kill_after: int
) -> None:
    database_url = db_url if db_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'var' / 'gw.sqlite3'}"
    gateway = gateway_process(workers=2, database_url=database_url)
    load = Load()
    threads = [
        threading.Thread(target=_sender, args=(gateway.url, gateway.secrets[VPCP], load), daemon=True)
        for _ in range(SENDERS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(load.acknowledged) < kill_after and time.monotonic() < deadline:
        time.sleep(0.01)
    gateway.kill()
    load.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert len(load.acknowledged) >= kill_after

    restarted = gateway_process(workers=2, database_url=database_url)
    counts = _audit_store(database_url, restarted.blob_dir, load)
    print(f"\ncrash after {kill_after}: {counts}")

    recipient = restarted.agent(NGHE_AN)
    items = {item["documentId"]: item for item in recipient.pending(100)}
    some_id, sha256 = next((d, s) for d, s in load.acknowledged.items() if d in items)
    fetched = fetch_streaming(restarted.url, NGHE_AN, restarted.secrets[NGHE_AN], items[some_id]["itemId"])
    assert fetched.fault_code is None and fetched.sha256 == sha256 == fetched.declared_sha256
