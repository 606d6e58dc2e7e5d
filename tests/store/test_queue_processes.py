"""Leasing from separate processes (no shared GIL, no shared pool): each item still goes out once."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier

import pytest

from gateway.store import queue
from gateway.store.database import Database
from gateway.store.models import Agency, Document

NOW = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


def _lease_until_empty(url: str, agency_id: int, start: Barrier, results: multiprocessing.Queue[list[str]]) -> None:
    database = Database(url)
    got_ids: list[str] = []
    try:
        start.wait()
        while True:
            with database.transaction() as session:
                got = queue.lease_pending(session, agency_id, 5, 3600, NOW)
            if not got:
                break
            got_ids.extend(d.id for d in got)
    finally:
        results.put(got_ids)
        database.dispose()


@pytest.mark.slow
def test_processes_lease_each_item_once(db_url: str, database: Database) -> None:
    workers, total = 4, 200
    with database.transaction() as session:
        sender = Agency(code="000.00.01.H01", name="Gửi", level=1, created_at=NOW)
        recipient = Agency(code="000.00.02.H01", name="Nhận", level=1, created_at=NOW)
        session.add_all([sender, recipient])
        session.flush()
        document = Document(
            id="00000000-0000-4000-8000-000000000001",
            sender_id=sender.id,
            edxml_document_id="d1",
            code_number="1",
            code_notation="CV",
            subject="s",
            type_name="Công văn",
            promulgation_date=NOW.date(),
            blob_sha256="0" * 64,
            size=1,
            created_at=NOW,
        )
        session.add(document)
        session.flush()
        created = [NOW + timedelta(seconds=i) for i in range(total)]
        kind = queue.KIND_DOCUMENT
        ids = {queue.enqueue(session, recipient.id, kind, document.id, None, t).id for t in created}
    database.dispose()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    results: multiprocessing.Queue[list[str]] = context.Queue()
    processes = [
        context.Process(target=_lease_until_empty, args=(db_url, recipient.id, start, results)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    chunks = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join()
    assert [p.exitcode for p in processes] == [0] * workers
    handed_out = Counter(item for chunk in chunks for item in chunk)
    assert [item for item, times in handed_out.items() if times > 1] == []
    assert set(handed_out) == ids
