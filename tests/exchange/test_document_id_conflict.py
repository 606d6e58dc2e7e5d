"""One DocumentId, one document: a resend of the same bytes is idempotent, other bytes are refused.

Issue 9.1: a different document under an already used DocumentId used to be answered "duplicate"
with the first receipt, so it was silently dropped and a recipient it added never received it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from exchange_support import RECIPIENT, SENDER, THIRD, Callers
from sqlalchemy import func, select
from support.blobs import stored_blobs
from support.letters import official_letter
from support.staging import stage

from gateway.edxml.reader import Source
from gateway.errors import DocumentIdConflict
from gateway.exchange.results import SendReceipt
from gateway.exchange.service import ExchangeService, StagedDocument
from gateway.store.blob_gc import Collector
from gateway.store.models import AuditEntry, Delivery, Document, Recipient

DOCUMENT_ID = f"{SENDER},2026/11/20,7816/VPCP-TTĐT"


def stored(service: ExchangeService) -> tuple[int, ...]:
    """Rows, stored blobs and files left in the blob store's staging area."""
    with service.db.transaction(readonly=True) as session:
        rows = tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Document, Recipient, Delivery, AuditEntry)
        )
    return (*rows, len(list(stored_blobs(service.blobs))), len(list(service.blobs.tmp_dir.iterdir())))


def discarded(staged: StagedDocument) -> bool:
    """Whether the staged copy was dropped: its staging file removed, or its buffer released."""
    try:
        source = staged.source
    except RuntimeError:
        return True
    return isinstance(source, Path) and not source.exists()


@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "staging-file"])
def test_resending_the_same_bytes_returns_the_first_receipt(service, callers: Callers, on_disk: bool) -> None:
    edxml = official_letter(SENDER, [RECIPIENT])
    first = service.send_document(callers.sender, stage(service, edxml))
    before = stored(service)
    again = stage(service, edxml, on_disk=on_disk)
    second = service.send_document(callers.sender, again)
    assert (second.document_id, second.recipients, second.duplicate) == (first.document_id, (RECIPIENT,), True)
    assert discarded(again), "the staged copy is discarded"
    assert stored(service) == before


@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "staging-file"])
def test_other_bytes_under_a_used_document_id_are_refused(service, callers: Callers, on_disk: bool) -> None:
    first = service.send_document(callers.sender, stage(service, official_letter(SENDER, [RECIPIENT])))
    before = stored(service)
    other = stage(service, official_letter(SENDER, [RECIPIENT, THIRD], document_id=DOCUMENT_ID), on_disk=on_disk)
    with pytest.raises(DocumentIdConflict) as refused:
        service.send_document(callers.sender, other)
    message = refused.value.message
    assert first.document_id in message, "the clerk learns which document holds the DocumentId"
    assert "20/11/2026 08:30:00 Vietnam time" in message, "01:30 UTC is 08:30 in Hà Nội"
    assert DOCUMENT_ID in message
    assert refused.value.code == "Client.DocumentIdConflict"
    assert discarded(other), "the staged document is discarded"
    assert stored(service) == before, "nothing stored, nothing queued for the new recipient"
    assert service.pending(callers.third) == []


def test_a_send_that_read_no_addressees_is_still_refused_other_bytes(service, callers: Callers) -> None:
    """The second send's addressee comes from the worker's copy (no read, so no duplicate check
    before storing): the unique constraint refuses it, nothing is queued, and the staged file,
    already stored by then, is a blob no row names, which ``blobs gc`` frees."""
    first = service.send_document(callers.sender, stage(service, official_letter(SENDER, [RECIPIENT])))
    rows_before, blobs_before = stored(service)[:4], stored(service)[4]
    other = stage(service, official_letter(SENDER, [RECIPIENT], attachment=b"%PDF-1.4 other bytes\n"))
    with pytest.raises(DocumentIdConflict) as refused:
        service.send_document(callers.sender, other)
    assert first.document_id in refused.value.message
    assert stored(service)[:4] == rows_before, "no row stored, nothing queued"
    assert stored(service)[4:] == (blobs_before + 1, 0), "the refused bytes are an unreferenced blob"
    pending = service.pending(callers.recipient)
    assert [i.document_id for i in pending] == [first.document_id]
    a_day_later = Collector(service.db, service.blobs, clock=lambda: time.time() + 86_400)
    assert a_day_later.run().freed_files == 1
    assert stored(service)[4] == blobs_before
    assert service.fetch(callers.recipient, pending[0].item_id).document_id == first.document_id


def test_the_same_document_id_from_another_sender_is_not_a_conflict(service, callers: Callers) -> None:
    service.send_document(callers.sender, stage(service, official_letter(SENDER, [RECIPIENT], document_id="X-1")))
    receipt = service.send_document(
        callers.recipient, stage(service, official_letter(RECIPIENT, [SENDER], document_id="X-1"))
    )
    assert receipt.duplicate is False


class _Gated:
    """A staged document whose commit waits until every racer has passed the duplicate check."""

    def __init__(self, staged: StagedDocument, gate: threading.Barrier) -> None:
        self._staged, self._gate = staged, gate

    @property
    def source(self) -> Source:
        return self._staged.source

    @property
    def size(self) -> int:
        return self._staged.size

    def write(self, data: bytes) -> int:
        return self._staged.write(data)

    def flush(self) -> None:
        self._staged.flush()

    def commit(self) -> tuple[str, int]:
        self._gate.wait(timeout=30)
        return self._staged.commit()

    def discard(self) -> None:
        self._staged.discard()


def race(service: ExchangeService, callers: Callers, documents: list[bytes]) -> list[SendReceipt | Exception]:
    """Send ``documents`` from as many threads, all past the duplicate check before any stores."""
    gate = threading.Barrier(len(documents))
    results: list[SendReceipt | Exception] = [Exception("not run")] * len(documents)

    def send(index: int) -> None:
        try:
            results[index] = service.send_document(callers.sender, _Gated(stage(service, documents[index]), gate))
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(documents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_identical_sends_racing_get_one_document(service, callers: Callers) -> None:
    edxml = official_letter(SENDER, [RECIPIENT, THIRD])
    results = race(service, callers, [edxml, edxml])
    assert all(isinstance(r, SendReceipt) for r in results), results
    receipts = [r for r in results if isinstance(r, SendReceipt)]
    assert receipts[0].document_id == receipts[1].document_id
    assert sorted(r.duplicate for r in receipts) == [False, True], "both passed the check: the store decided"
    documents, recipients, deliveries, audit_entries, blobs, staging = stored(service)
    assert (documents, recipients, deliveries, audit_entries, blobs, staging) == (1, 2, 2, 1, 1, 0)


def test_two_different_sends_racing_one_is_refused(service, callers: Callers) -> None:
    results = race(
        service,
        callers,
        [official_letter(SENDER, [RECIPIENT]), official_letter(SENDER, [RECIPIENT, THIRD], document_id=DOCUMENT_ID)],
    )
    assert sorted(type(r).__name__ for r in results) == ["DocumentIdConflict", "SendReceipt"], results
    winner = next(r for r in results if isinstance(r, SendReceipt))
    loser = next(r for r in results if isinstance(r, DocumentIdConflict))
    assert winner.document_id in loser.message
    documents, recipients, deliveries, _audit, _blobs, staging = stored(service)
    assert (documents, recipients, deliveries, staging) == (1, len(winner.recipients), len(winner.recipients), 0)
