"""Fetching and acknowledging against the service: ownership, withdrawal, idempotence, batches."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from exchange_support import RECIPIENT, SENDER, THIRD, Callers
from sqlalchemy import select
from support.letters import official_letter
from support.staging import stage

from gateway.edxml import read_status
from gateway.errors import NotFound
from gateway.exchange.service import ExchangeService
from gateway.store import audit, queue
from gateway.store.models import AuditEntry, Delivery, Recipient, StatusEvent


def send(service: ExchangeService, callers: Callers, number: str, recipients: tuple[str, ...] = (RECIPIENT,)) -> str:
    edxml = official_letter(SENDER, list(recipients), number=number)
    return service.send_document(callers.sender, stage(service, edxml)).document_id


def states(service: ExchangeService) -> dict[str, str]:
    with service.db.transaction(readonly=True) as session:
        return dict(session.execute(select(Delivery.id, Delivery.state)).all())


def acks(service: ExchangeService) -> int:
    with service.db.transaction(readonly=True) as session:
        return len(session.scalars(select(AuditEntry.id).where(AuditEntry.action == "ack")).all())


def test_the_first_fetch_records_arrival_once(service, callers: Callers) -> None:
    document_id = send(service, callers, "1")
    item = service.pending(callers.recipient)[0]
    fetched = service.fetch(callers.recipient, item.item_id)
    assert fetched.path.read_bytes()[:5] == b"<?xml" and fetched.size == fetched.path.stat().st_size
    service.fetch(callers.recipient, item.item_id)
    with service.db.transaction(readonly=True) as session:
        events = session.scalars(select(StatusEvent.code).where(StatusEvent.document_id == document_id)).all()
        copy = session.scalars(select(Recipient).where(Recipient.document_id == document_id)).one()
        fetched_at = session.scalar(select(Delivery.fetched_at).where(Delivery.id == item.item_id))
    assert events == ["01"] and copy.status == "01"
    assert fetched_at == service.clock()
    status_item = service.pending(callers.sender)[0]
    got = service.fetch(callers.sender, status_item.item_id)
    assert (got.kind, got.size) == ("status", got.path.stat().st_size) == ("status", status_item.size)


def test_the_01_file_is_stored_before_the_fetch_locks_and_a_lost_race_leaves_only_an_orphan(
    service, callers: Callers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 01's file is written before the fetch's transaction (its fsyncs must not hold SQLite's write
    lock). Another fetch may record the 01 in between: then one event exists, it names its own file, and
    the early file is named by no row (disk space for ``blobs gc``, nothing else)."""
    document_id = send(service, callers, "1")
    item = service.pending(callers.recipient)[0]
    store_first = service._store_arrivals
    early: list[tuple[str, int] | None] = []

    def racing(caller, plans, now):  # type: ignore[no-untyped-def]
        stored = store_first(caller, plans, now)
        early.extend(stored)
        if len(early) == 1:
            later = now + timedelta(seconds=1)  # its 01 says a later time: another file
            monkeypatch.setattr(service, "clock", lambda: later)
            service.fetch(callers.recipient, item.item_id)  # the other fetch wins: it records the 01
        return stored

    monkeypatch.setattr(service, "_store_arrivals", racing)
    service.fetch(callers.recipient, item.item_id)
    with service.db.transaction(readonly=True) as session:
        events = session.execute(
            select(StatusEvent.code, StatusEvent.blob_sha256).where(StatusEvent.document_id == document_id)
        ).all()
    assert [code for code, _ in events] == ["01"]
    assert early[0] is not None and early[1] is not None, "both fetches saw a copy without its 01"
    orphan, named = early[0][0], events[0][1]
    assert named == early[1][0] != orphan, "the winner's own file is the one its event names"
    assert service.blobs.verify(orphan) and service.blobs.verify(named)
    assert read_status(service.blobs.path(named)).status_code == read_status(service.blobs.path(orphan)).status_code


def test_another_agencys_item_is_not_found(service, callers: Callers) -> None:
    send(service, callers, "1")
    item = service.pending(callers.recipient)[0]
    for call in (service.fetch, service.acknowledge):
        with pytest.raises(NotFound, match=item.item_id):
            call(callers.third, item.item_id)
    assert states(service) == {item.item_id: queue.PENDING}


def test_acknowledging_many_is_all_or_nothing_and_idempotent(service, callers: Callers) -> None:
    for number in ("1", "2", "3"):
        send(service, callers, number, (RECIPIENT, THIRD))
    mine = [i.item_id for i in service.pending(callers.recipient)]
    foreign = service.pending(callers.third)[0].item_id
    before = states(service)
    with pytest.raises(NotFound) as refused:
        service.acknowledge_many(callers.recipient, [mine[0], foreign, "no-such-item", mine[1]])
    assert foreign in refused.value.message and "no-such-item" not in refused.value.message, "the first one"
    assert states(service) == before and acks(service) == 0, "nothing acknowledged"
    with pytest.raises(NotFound, match="no-such-item"):
        service.acknowledge_many(callers.recipient, [mine[0], "no-such-item"])
    assert service.acknowledge_many(callers.recipient, mine[:2]) == 2
    assert service.acknowledge_many(callers.recipient, [*mine, mine[2]]) == 1, "again: only the third was pending"
    assert service.acknowledge_many(callers.recipient, mine) == 0
    assert acks(service) == 3, "one audit entry per item, once"
    assert {states(service)[i] for i in mine} == {queue.ACKED}
    assert service.pending(callers.recipient) == []
    assert service.acknowledge_many(callers.recipient, []) == 0


def test_a_withdrawn_item_cannot_be_fetched_or_acknowledged(service, callers: Callers) -> None:
    document_id = send(service, callers, "1")
    item = service.pending(callers.recipient)[0]
    service.update_status(callers.sender, document_id, "13", "Ban hành nhầm")
    for call in (service.fetch, service.acknowledge):
        with pytest.raises(NotFound, match="withdrawn"):
            call(callers.recipient, item.item_id)
    with service.db.transaction(readonly=True) as session:
        assert session.scalar(select(Delivery.fetched_at).where(Delivery.id == item.item_id)) is None
    assert states(service)[item.item_id] == queue.WITHDRAWN


def test_a_status_message_stored_before_migration_0003_is_sized_from_its_file(service, callers: Callers) -> None:
    send(service, callers, "1")
    service.fetch(callers.recipient, service.pending(callers.recipient)[0].item_id)
    with service.db.transaction() as session:
        event = session.scalars(select(StatusEvent)).one()
        stored_size, event.blob_size = event.blob_size, None
    assert stored_size == service.blobs.size(event.blob_sha256)
    item = service.pending(callers.sender)[0]
    assert item.size == stored_size
    assert service.fetch(callers.sender, item.item_id).size == stored_size


def _fetched_marks(service: ExchangeService) -> dict[str, bool]:
    with service.db.transaction(readonly=True) as session:
        return {i: at is not None for i, at in session.execute(select(Delivery.id, Delivery.fetched_at)).all()}


def test_fetching_many_is_fetching_each_in_one_transaction(service, callers: Callers) -> None:
    """fetch_many records what fetch records for each item (its fetch, the copy's 01 once), in the order asked."""
    for number in ("1", "2", "3"):
        send(service, callers, number)
    mine = [i.item_id for i in service.pending(callers.recipient)]
    asked = [mine[2], mine[0], mine[2], mine[1]]
    fetched = service.fetch_many(callers.recipient, asked)
    assert [f.item_id for f in fetched] == [mine[2], mine[0], mine[1]], "in order, an id asked twice once"
    one_by_one = [service.fetch(callers.recipient, f.item_id) for f in fetched]
    assert [(f.document_id, f.sha256, f.size, f.path) for f in fetched] == [
        (f.document_id, f.sha256, f.size, f.path) for f in one_by_one
    ]
    with service.db.transaction(readonly=True) as session:
        events = session.scalars(select(StatusEvent.code)).all()
        copies = session.scalars(select(Recipient.status)).all()
        fetches = session.scalars(select(AuditEntry.id).where(AuditEntry.action == "fetch")).all()
    assert events == ["01"] * 3 and copies == ["01"] * 3, "one 01 per copy, by the batch, not again"
    assert len(fetches) == 6
    statuses = service.fetch_many(callers.sender, [i.item_id for i in service.pending(callers.sender)])
    assert [s.kind for s in statuses] == ["status"] * 3
    assert all(read_status(s.path).status_code == "01" for s in statuses)
    with service.db.transaction(readonly=True) as session:
        assert audit.verify(session).ok


def test_fetching_many_is_all_or_nothing(service, callers: Callers) -> None:
    for number in ("1", "2"):
        send(service, callers, number, (RECIPIENT, THIRD))
    mine = [i.item_id for i in service.pending(callers.recipient)]
    foreign = service.pending(callers.third)[0].item_id
    with pytest.raises(NotFound) as refused:
        service.fetch_many(callers.recipient, [mine[0], foreign, "no-such-item", mine[1]])
    assert foreign in refused.value.message and "no-such-item" not in refused.value.message, "the first one"
    assert not any(_fetched_marks(service).values()), "nothing fetched"
    with service.db.transaction(readonly=True) as session:
        assert session.scalars(select(StatusEvent.id)).all() == [], "no 01 recorded"
    assert service.fetch_many(callers.recipient, []) == []


def test_fetching_many_refuses_all_when_one_item_was_withdrawn(service, callers: Callers) -> None:
    first, second = send(service, callers, "1"), send(service, callers, "2")
    mine = {i.document_id: i.item_id for i in service.pending(callers.recipient)}
    service.update_status(callers.sender, second, "13", "Ban hành nhầm")
    assert states(service)[mine[second]] == queue.WITHDRAWN
    with pytest.raises(NotFound, match="withdrawn"):
        service.fetch_many(callers.recipient, [mine[first], mine[second]])
    assert not _fetched_marks(service)[mine[first]]


def test_fetching_many_stops_where_the_files_outgrow_the_limit(service, callers: Callers, monkeypatch) -> None:
    for number in ("1", "2", "3"):
        send(service, callers, number)
    mine = [i.item_id for i in service.pending(callers.recipient)]
    size = service.fetch_many(callers.recipient, mine[:1])[0].size
    limited = dataclasses.replace(service.settings, max_fetch_bytes=2 * size + 10)
    monkeypatch.setattr(service, "settings", limited)
    assert [f.item_id for f in service.fetch_many(callers.recipient, mine)] == mine[:2]
    assert _fetched_marks(service)[mine[2]] is False, "left pending, unfetched, for the next call"
    tiny = dataclasses.replace(service.settings, max_fetch_bytes=1, max_pending_items=1)
    monkeypatch.setattr(service, "settings", tiny)
    assert [f.item_id for f in service.fetch_many(callers.recipient, [mine[2], "not checked"])] == [mine[2]], (
        "the first always, and ids past the cap are neither fetched nor checked"
    )
