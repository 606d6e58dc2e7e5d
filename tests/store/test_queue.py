"""The pull queue: leases hide items from other polls, expire back, and acknowledgements are final."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from support.queue_counts import pending_counts

from gateway.store import queue
from gateway.store.database import Database
from gateway.store.models import Agency, Delivery, Document

MakeAgency = Callable[..., Agency]
MakeDocument = Callable[..., Document]

NOW = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
LEASE = 300


def _seed(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument, count: int
) -> tuple[int, int, str, list[str]]:
    """A sender, a recipient and ``count`` queued copies of one document, created a second apart."""
    with database.transaction() as session:
        sender = make_agency(session, "000.00.01.H01")
        recipient = make_agency(session, "000.00.02.H01")
        document = make_document(session, sender)
        ids = []
        for i in range(count):
            created = NOW + timedelta(seconds=i)
            item = queue.enqueue(session, recipient.id, queue.KIND_DOCUMENT, document.id, None, created)
            ids.append(item.id)
    return sender.id, recipient.id, document.id, ids


def test_enqueue_and_lease_oldest_first(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    _, recipient, _, ids = _seed(database, make_agency, make_document, 5)
    with database.transaction() as session:
        leased = queue.lease_pending(session, recipient, 3, LEASE, NOW)
    assert [d.id for d in leased] == ids[:3]
    assert all(d.attempts == 1 and d.lease_until == NOW + timedelta(seconds=LEASE) for d in leased)
    assert all(d.state == queue.PENDING for d in leased)


def test_lease_excludes_other_callers_until_it_expires(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    _, recipient, _, ids = _seed(database, make_agency, make_document, 3)
    with database.transaction() as session:
        first = queue.lease_pending(session, recipient, 10, LEASE, NOW)
    assert [d.id for d in first] == ids
    with database.transaction() as session:
        assert queue.lease_pending(session, recipient, 10, LEASE, NOW + timedelta(seconds=LEASE - 1)) == []
    expired = NOW + timedelta(seconds=LEASE)
    with database.transaction() as session:
        again = queue.lease_pending(session, recipient, 10, LEASE, expired)
    assert [d.id for d in again] == ids
    assert all(d.attempts == 2 for d in again)


def test_acknowledged_items_leave_the_queue_and_ack_is_idempotent(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    _, recipient, _, ids = _seed(database, make_agency, make_document, 2)
    with database.transaction() as session:
        queue.lease_pending(session, recipient, 10, LEASE, NOW)
    with database.transaction() as session:
        assert [i.state for i in queue.acknowledge_items(session, ids[:1], recipient, NOW + timedelta(seconds=5))] == [
            queue.ACKED
        ]
    with database.transaction() as session:
        assert queue.acknowledge_items(session, ids[:1], recipient, NOW + timedelta(seconds=50)) == []
        assert session.scalar(select(Delivery.acked_at).where(Delivery.id == ids[0])) == NOW + timedelta(seconds=5)
    later = NOW + timedelta(hours=1)
    with database.transaction() as session:
        assert [d.id for d in queue.lease_pending(session, recipient, 10, LEASE, later)] == ids[1:]
        assert pending_counts(session) == {recipient: 1}


def test_withdraw_takes_back_only_unfetched_document_items(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    with database.transaction() as session:
        sender = make_agency(session, "000.00.01.H01")
        a, b, c = (make_agency(session, f"000.00.0{i}.H01") for i in (2, 3, 4))
        document = make_document(session, sender)
        for_a = queue.enqueue(session, a.id, queue.KIND_DOCUMENT, document.id, now=NOW)
        for_b = queue.enqueue(session, b.id, queue.KIND_DOCUMENT, document.id, now=NOW)
        for_c = queue.enqueue(session, c.id, queue.KIND_DOCUMENT, document.id, now=NOW)
        queue.lease_pending(session, a.id, 10, LEASE, NOW)  # listed but not fetched: still withdrawable
        queue.lease_pending(session, b.id, 10, LEASE, NOW)
        queue.fetch_item(database, session, for_b.id, b.id, NOW + timedelta(seconds=1))
    with database.transaction() as session:
        withdrawn = queue.withdraw(session, document.id, [a.id, b.id], NOW + timedelta(minutes=1))
    assert [d.id for d in withdrawn] == [for_a.id]
    with database.transaction() as session:
        states = {d.id: d.state for d in session.scalars(select(Delivery))}
        assert states == {for_a.id: queue.WITHDRAWN, for_b.id: queue.PENDING, for_c.id: queue.PENDING}
        assert queue.lease_pending(session, a.id, 10, LEASE, NOW + timedelta(hours=1)) == []
        assert pending_counts(session) == {b.id: 1, c.id: 1}
        item, _ = queue.fetch_item(database, session, for_a.id, a.id, NOW + timedelta(hours=1))
        assert item is not None and item.state == queue.WITHDRAWN
        assert queue.acknowledge_items(session, [for_a.id], a.id, NOW + timedelta(hours=1)) == []
        assert session.execute(select(Delivery.state, Delivery.fetched_at).where(Delivery.id == for_a.id)).one() == (
            queue.WITHDRAWN,
            None,
        )


def test_status_items_need_an_event_and_kinds_are_checked(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    with database.transaction() as session:
        sender = make_agency(session, "000.00.01.H01")
        document = make_document(session, sender)
        with pytest.raises(ValueError, match="status event"):
            queue.enqueue(session, sender.id, queue.KIND_STATUS, document.id, now=NOW)
        with pytest.raises(ValueError, match="unknown delivery kind"):
            queue.enqueue(session, sender.id, "fax", document.id, now=NOW)
        with pytest.raises(ValueError, match="naive"):
            queue.lease_pending(session, sender.id, 1, LEASE, datetime(2026, 1, 1))


@pytest.mark.slow
def test_concurrent_leasing_hands_out_each_item_once(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    """Eight threads, each with its own connection, drain one agency's 200 items in small batches."""
    workers, batch, total = 8, 7, 200
    _, recipient, _, ids = _seed(database, make_agency, make_document, total)
    start = threading.Barrier(workers)
    received: list[list[str]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def lease_until_empty(slot: int) -> None:
        try:
            start.wait()
            while True:
                with database.transaction() as session:
                    got = queue.lease_pending(session, recipient, batch, 3600, NOW)
                if not got:
                    return
                received[slot].extend(d.id for d in got)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=lease_until_empty, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    handed_out = Counter(item for chunk in received for item in chunk)
    assert [item for item, times in handed_out.items() if times > 1] == []
    assert set(handed_out) == set(ids)

    def acknowledge_all(chunk: list[str]) -> None:
        try:
            for delivery_id in chunk:
                with database.transaction() as session:
                    acked = queue.acknowledge_items(session, [delivery_id], recipient, NOW + timedelta(seconds=1))
                    assert [i.id for i in acked] == [delivery_id]
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=acknowledge_all, args=(chunk,)) for chunk in received]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.transaction() as session:
        assert pending_counts(session) == {}
        assert queue.lease_pending(session, recipient, total, LEASE, NOW + timedelta(days=1)) == []
        assert {d.state for d in session.scalars(select(Delivery))} == {queue.ACKED}


def test_enqueue_many_fans_a_document_out_in_one_statement(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    with database.transaction() as session:
        sender = make_agency(session, "000.00.01.H02")
        recipients = [make_agency(session, code).id for code in ("000.00.02.H02", "000.00.03.H02")]
        document = make_document(session, sender)
        queue.enqueue_many(session, recipients, queue.KIND_DOCUMENT, document.id, NOW)
        with pytest.raises(ValueError, match="documents"):
            queue.enqueue_many(session, recipients, queue.KIND_STATUS, document.id, NOW)
    with database.transaction() as session:
        rows = session.scalars(select(Delivery).where(Delivery.document_id == document.id)).all()
        assert sorted(d.agency_id for d in rows) == sorted(recipients)
        assert {(d.state, d.kind, d.attempts, d.created_at) for d in rows} == {(queue.PENDING, "document", 0, NOW)}
        assert len({d.id for d in rows}) == 2


def test_has_available_sees_only_what_a_poll_could_lease(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    sender, recipient, _, ids = _seed(database, make_agency, make_document, 2)
    with database.transaction(readonly=True) as session:
        assert queue.has_available(session, recipient, NOW) is True
        assert queue.has_available(session, sender, NOW) is False, "another agency's items are not its own"
    with database.transaction() as session:
        queue.lease_pending(session, recipient, 10, LEASE, NOW)
    with database.transaction(readonly=True) as session:
        assert queue.has_available(session, recipient, NOW + timedelta(seconds=LEASE - 1)) is False, "leased"
        assert queue.has_available(session, recipient, NOW + timedelta(seconds=LEASE)) is True, "lease expired"
    with database.transaction() as session:
        assert len(queue.acknowledge_items(session, ids, recipient, NOW)) == 2
    with database.transaction(readonly=True) as session:
        assert queue.has_available(session, recipient, NOW + timedelta(days=1)) is False, "acknowledged"


def test_fetch_item_keeps_the_first_time_and_never_marks_a_withdrawn_item(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    sender, recipient, document_id, ids = _seed(database, make_agency, make_document, 1)
    with database.transaction() as session:
        assert queue.fetch_item(database, session, ids[0], sender, NOW) == (None, []), "not the sender's item"
        first, _ = queue.fetch_item(database, session, ids[0], recipient, NOW + timedelta(seconds=1))
        queue.fetch_item(database, session, ids[0], recipient, NOW + timedelta(seconds=9))
    assert first == queue.Item(ids[0], queue.KIND_DOCUMENT, document_id, None, queue.PENDING)
    with database.transaction() as session:
        assert session.scalar(select(Delivery.fetched_at)) == NOW + timedelta(seconds=1)
        assert queue.withdraw(session, document_id, [recipient], NOW) == [], "a fetched copy stays"
        other = make_agency(session, "000.00.09.H01")
        late = queue.enqueue(session, other.id, queue.KIND_DOCUMENT, document_id, now=NOW)
    with database.transaction() as session:
        assert [d.id for d in queue.withdraw(session, document_id, [other.id], NOW)] == [late.id]
    with database.transaction() as session:
        item, _ = queue.fetch_item(database, session, late.id, other.id, NOW)
        assert item is not None and item.state == queue.WITHDRAWN
        assert session.scalar(select(Delivery.fetched_at).where(Delivery.id == late.id)) is None


def test_acknowledge_items_changes_only_the_agencys_pending_items(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    sender, recipient, _, ids = _seed(database, make_agency, make_document, 3)
    with database.transaction() as session:
        assert queue.acknowledge_items(session, ids, sender, NOW) == [], "another agency's items"
        assert {i.id for i in queue.acknowledge_items(session, ids[:2], recipient, NOW)} == set(ids[:2])
    with database.transaction() as session:
        again = queue.acknowledge_items(session, ids, recipient, NOW + timedelta(hours=1))
        assert [i.id for i in again] == [ids[2]], "acknowledged items are left as they were"
        assert queue.states(session, [*ids, "no-such-id"], recipient) == dict.fromkeys(ids, queue.ACKED)
        assert queue.states(session, ids, sender) == {}
        acked_at = dict(session.execute(select(Delivery.id, Delivery.acked_at)).all())
    assert acked_at == {ids[0]: NOW, ids[1]: NOW, ids[2]: NOW + timedelta(hours=1)}
