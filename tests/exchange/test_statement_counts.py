"""Round trips of the receiving calls, counted on both backends (README "Performance").

Every agency polls getPendingDocuments, and most polls find nothing: an empty poll must not take
the write lock (no ``BEGIN IMMEDIATE`` on SQLite, no ``FOR UPDATE`` on PostgreSQL), and a poll that
leases k items must cost the same number of statements for k = 1 and k = 100. getDocument and
confirmReceived are counted too, so adding a statement to them is a decision.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from support.staging import stage
from support.statements import counting, pipelined

from gateway.config import Settings
from gateway.edxml import DocumentMessage, Organization, document_bytes
from gateway.exchange.credentials import hash_secret
from gateway.exchange.service import ExchangeService
from gateway.store import audit
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, AuditEntry, Credential

SENDER, RECIPIENT = "000.00.00.G22", "000.00.00.H41"
T0 = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)


@pytest.fixture
def service(database: Database, tmp_path) -> ExchangeService:
    with database.transaction() as session:
        for code in (SENDER, RECIPIENT):
            agency = Agency(code=code, name=f"Cơ quan {code}", level=1, created_at=T0)
            session.add(agency)
            session.flush()
            session.add(Credential(agency_id=agency.id, secret_hash=hash_secret(f"s-{code}"), created_at=T0))
    settings = Settings(data_dir=tmp_path, database_url=str(database.url), lease_seconds=300)
    return ExchangeService(database, BlobStore(tmp_path / "blobs"), settings, clock=lambda: T0)


def letter(number: int) -> bytes:
    return document_bytes(
        DocumentMessage(
            sender=Organization(SENDER, "Văn phòng Chính phủ"),
            recipients=(Organization(RECIPIENT, "UBND tỉnh Nghệ An"),),
            code_number=str(number),
            code_notation="TTg-KSTT",
            promulgation_date=date(2026, 11, 19),
            type_code=1,
            type_name="Công văn",
            subject="Thử nghiệm",
            document_id=f"doc-{number}",
        )
    )


def real(statements: list[str]) -> list[str]:
    """The statements that are round trips of work (not SQLite's BEGIN/COMMIT bookkeeping)."""
    return [s for s in statements if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))]


def takes_write_lock(statements: list[str]) -> bool:
    return any(s.startswith("BEGIN IMMEDIATE") or "FOR UPDATE" in s for s in statements)


def call_counted(service: ExchangeService, call: Callable[[], object]) -> list[str]:
    with counting(service.db.engine) as executed:
        call()
    return executed


def send(service: ExchangeService, count: int) -> None:
    sender = service.authenticate(SENDER, f"s-{SENDER}")
    for number in range(count):
        service.send_document(sender, stage(service, letter(number)))


def poll(service: ExchangeService, limit: int, fresh_caller: bool = False) -> Callable[[], object]:
    """One poll as one request makes it: authentication, then the poll (``fresh_caller`` as the SOAP layer)."""

    def run() -> object:
        recipient = service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
        return service.pending(recipient, limit, fresh_caller=fresh_caller)

    return run


def test_an_empty_poll_takes_no_write_lock(service) -> None:
    executed = call_counted(service, poll(service, 100))
    assert not takes_write_lock(executed), executed
    assert len(real(executed)) == 2, executed  # authentication, the availability check


def test_a_poll_costs_the_same_for_one_item_and_for_a_hundred(service) -> None:
    send(service, 101)
    one = call_counted(service, poll(service, 1))
    hundred = call_counted(service, poll(service, 100))
    assert len(real(one)) == len(real(hundred)) == 4, (one, hundred)  # authentication, check, lease, load
    empty = call_counted(service, poll(service, 100))
    assert not takes_write_lock(empty) and len(real(empty)) == 2, "leased items are not available"


def test_a_request_that_authenticated_answers_an_empty_poll_from_that_statement(service) -> None:
    """The SOAP layer's poll (``fresh_caller``): authentication already said whether anything waits."""
    empty = call_counted(service, poll(service, 100, fresh_caller=True))
    assert len(real(empty)) == 1 and not takes_write_lock(empty), empty  # authentication alone
    send(service, 3)
    leased = call_counted(service, poll(service, 100, fresh_caller=True))
    assert len(real(leased)) == 4, leased  # authentication, check, lease, load: as before


def test_what_authentication_saw_is_used_only_when_the_caller_is_fresh(service) -> None:
    """A caller kept across requests (the certification engine, a test) must not hide later items."""
    recipient = service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    assert recipient.saw_waiting is False
    send(service, 1)
    assert len(service.pending(recipient, 10)) == 1, "the availability check runs again"
    assert service.pending(recipient, 10, fresh_caller=True) == [], "what the caller saw: nothing (its own request)"
    again = service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    assert again.saw_waiting is False, "the item is leased: not available"


def test_fetch_and_acknowledge_statements(service) -> None:
    """Counted without authentication (one more SELECT per call). Before issue 13.2 a first fetch was 14
    statements, a second one 6, an acknowledgement 5; before the fetch's lock-free read also found
    the file, a first fetch was 8 on PostgreSQL and a second one 6; before migration 0007 appended to
    the audit chain in one call, PostgreSQL's first fetch was 7, its second 4 and its acknowledgement 3."""
    postgresql = service.db.dialect_name == "postgresql"
    send(service, 1)
    recipient = service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    item = service.pending(recipient, 1)[0]
    first = real(call_counted(service, lambda: service.fetch(recipient, item.item_id)))
    again = real(call_counted(service, lambda: service.fetch(recipient, item.item_id)))
    ack = real(call_counted(service, lambda: service.acknowledge(recipient, item.item_id)))
    ack_again = real(call_counted(service, lambda: service.acknowledge(recipient, item.item_id)))
    # Before the transaction, without a lock, the item's file and whether the copy still lacks its 01
    # (whose file is then stored outside the write lock); then the item (UPDATE ... RETURNING), the
    # copy's 01, the 01's event and queue item, and the 01's and the fetch's audit entries: one call that
    # appends both on PostgreSQL; a head read, then one INSERT for both on SQLite (no round trips there).
    assert len(first) == (6 if postgresql else 7), first
    assert [s.split()[0] for s in first[:3]] == ["SELECT", "UPDATE", "UPDATE"], first
    assert "recipients.status IS NULL" in first[0], first[0]
    audit_statements = 1 if postgresql else 2  # the append function; or the head, then the INSERT
    assert len(again) == 2 + audit_statements, again  # the copy has its 01: the read, the item, the audit entry
    assert len(ack) == 1 + audit_statements, ack  # one UPDATE ... RETURNING and the audit entry
    assert len(ack_again) == 2, ack_again  # nothing to change, then why: it was acknowledged
    assert not any(s.startswith("SELECT") and "FOR UPDATE" in s for s in first + ack), "no re-read under lock"


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_first_fetch_on_postgresql_is_five_round_trips(service) -> None:
    """The lock-free read; BEGIN with the item's UPDATE and the copy's 01 in one pipeline; the 01's
    event (its id is the queue item's); the 01's queue item with both audit entries in a second
    pipeline; COMMIT (which no statement listener sees). A second fetch: the read, BEGIN with the
    item's UPDATE, the audit entry (a pipeline of its own), COMMIT."""
    send(service, 1)
    recipient = service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    item = service.pending(recipient, 1)[0]
    with pipelined(service.db.engine) as first:
        service.fetch(recipient, item.item_id)
    with pipelined(service.db.engine) as again:
        service.fetch(recipient, item.item_id)
    assert [s.split()[0] for s, _ in first] == ["SELECT", "UPDATE", "UPDATE", "INSERT", "INSERT", "SELECT"], first
    assert [in_pipeline for _, in_pipeline in first] == [False, True, True, False, True, True], first
    assert [(s.split()[0], in_pipeline) for s, in_pipeline in again] == [
        ("SELECT", False),
        ("UPDATE", True),
        ("SELECT", True),
    ], again


def test_acknowledging_many_items_is_one_update(service) -> None:
    """One UPDATE for 1 or 20 items, then an audit entry per item so each document's trail stays whole:
    on PostgreSQL one call of the append function for all of them; on SQLite a read of the chain head,
    then one INSERT for all the entries, each with the id after the last (before, one INSERT per entry,
    since SQLAlchemy returns ids in order there only row by row)."""
    send(service, 21)
    recipient = service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    ids = [item.item_id for item in service.pending(recipient, 21)]
    one = real(call_counted(service, lambda: service.acknowledge_many(recipient, ids[:1])))
    executed = real(call_counted(service, lambda: service.acknowledge_many(recipient, ids[1:])))
    inserts = 0 if service.db.dialect_name == "postgresql" else 1
    assert len(one) == 2 + inserts, one
    assert [s.split()[0] for s in executed] == ["UPDATE", "SELECT"] + ["INSERT"] * inserts, executed
    with service.db.transaction(readonly=True) as session:
        acks = session.execute(select(AuditEntry.detail).where(AuditEntry.action == "ack").order_by(AuditEntry.id))
        assert sorted(json.loads(detail)["item_id"] for (detail,) in acks) == sorted(ids)
        assert audit.verify(session).ok
