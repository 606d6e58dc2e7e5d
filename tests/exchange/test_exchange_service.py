"""The exchange service without HTTP: leases against a controlled clock, credentials, identifiers."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from exchange_support import RECIPIENT, SENDER, T0
from sqlalchemy import func, select, text
from support.staging import stage
from support.statements import counting, pipelined

from gateway.edxml import DocumentMessage, Organization, document_bytes, read_status
from gateway.errors import AuthenticationFailed, UnknownRecipient
from gateway.store.models import Agency, Credential, Delivery, Document


def letter(document_id: str | None = "doc-1") -> bytes:
    message = DocumentMessage(
        sender=Organization(SENDER, "Văn phòng Chính phủ"),
        recipients=(Organization(RECIPIENT, "UBND tỉnh Nghệ An"),),
        code_number="15",
        code_notation="TTg-KSTT",
        promulgation_date=date(2026, 11, 19),
        type_code=1,
        type_name="Công văn",
        subject="Thử nghiệm",
        document_id=document_id,
    )
    return document_bytes(message)


def test_an_unacknowledged_item_comes_back_after_its_lease(service, clock, tmp_path) -> None:
    sender, recipient = service.authenticate(SENDER, f"s-{SENDER}"), service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    service.send_document(sender, stage(service, letter()))
    first = service.pending(recipient)
    assert [i.attempts for i in first] == [1]
    assert first[0].lease_expires_at == T0 + timedelta(seconds=300)
    clock.now = T0 + timedelta(seconds=299)
    assert service.pending(recipient) == [], "hidden while the lease is live"
    clock.now = T0 + timedelta(seconds=300)
    again = service.pending(recipient)
    assert [(i.item_id, i.attempts) for i in again] == [(first[0].item_id, 2)]
    assert again[0].edxml_document_id == "doc-1", "the sender's DocumentId lets the recipient de-duplicate"
    service.acknowledge(recipient, first[0].item_id)
    clock.now = T0 + timedelta(hours=2)
    assert service.pending(recipient) == []


def test_status_messages_carry_vietnam_local_time(service, clock, tmp_path) -> None:
    sender, recipient = service.authenticate(SENDER, f"s-{SENDER}"), service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    receipt = service.send_document(sender, stage(service, letter()))
    service.fetch(recipient, service.pending(recipient)[0].item_id)
    status_item = service.pending(sender)[0]
    message = read_status(service.fetch(sender, status_item.item_id).path)
    assert message.status_code == "01"
    assert message.timestamp.replace(tzinfo=None) == datetime(2026, 11, 20, 8, 30), "01:30 UTC is 08:30 in Hà Nội"
    assert receipt.document_id == status_item.document_id


def test_missing_document_id_falls_back_to_the_sdk_convention(service, tmp_path) -> None:
    sender = service.authenticate(SENDER, f"s-{SENDER}")
    document = letter(document_id=None)  # built once: its TraceHeader carries the time it was written
    receipt = service.send_document(sender, stage(service, document))
    assert receipt.edxml_document_id == f"{SENDER},2026/11/19,15/TTg-KSTT"
    assert service.send_document(sender, stage(service, document)).duplicate is True


def test_a_resend_is_answered_with_its_receipt_even_when_no_addressee_is_active_any_more(service, database) -> None:
    """The duplicate check rides on the addressee lookup; with no active addressee left it must still
    be made, and a resend still gets its first receipt rather than UnknownRecipient."""
    sender, document = service.authenticate(SENDER, f"s-{SENDER}"), letter()
    first = service.send_document(sender, stage(service, document))
    with database.transaction() as session:
        session.scalar(select(Agency).where(Agency.code == RECIPIENT)).active = False
    sender = service.authenticate(SENDER, f"s-{SENDER}")  # a new request, which sees the change
    again = service.send_document(sender, stage(service, document))
    assert (again.duplicate, again.document_id, again.recipients) == (True, first.document_id, (RECIPIENT,))
    with pytest.raises(UnknownRecipient, match=RECIPIENT):
        service.send_document(sender, stage(service, letter(document_id="doc-2")))


@pytest.mark.parametrize(
    ("change", "still_addressable"),
    [
        ("UPDATE agencies SET active = false WHERE code = :code", False),
        ("UPDATE agencies SET home_instance = 'another-province' WHERE code = :code", True),
        ("UPDATE agencies SET code = 'H41-renamed' WHERE code = :code", False),
    ],
    ids=["deactivated", "moved", "renamed"],
)
def test_a_directory_change_made_any_way_reaches_the_next_send(service, database, change, still_addressable) -> None:
    """Addressees a worker already read are reused only while the agencies table is unchanged:
    a change made with plain SQL, past every function of the gateway, is seen by the next request."""
    sender = service.authenticate(SENDER, f"s-{SENDER}")
    service.send_document(sender, stage(service, letter(document_id="doc-1")))
    with database.engine.begin() as connection:
        connection.execute(text(change), {"code": RECIPIENT})
    sender = service.authenticate(SENDER, f"s-{SENDER}")
    if still_addressable:
        receipt = service.send_document(sender, stage(service, letter(document_id="doc-2")))
        with database.transaction(readonly=True) as session:
            queued = session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.document_id == receipt.document_id)
            )
        assert queued == 0, "a recipient served by another instance is relayed, not queued here"
    else:
        with pytest.raises(UnknownRecipient, match=RECIPIENT):
            service.send_document(sender, stage(service, letter(document_id="doc-2")))


def test_recall_marks_the_document_recalled(service, database, clock, tmp_path) -> None:
    sender = service.authenticate(SENDER, f"s-{SENDER}")
    receipt = service.send_document(sender, stage(service, letter()))
    clock.now = T0 + timedelta(minutes=5)
    service.update_status(sender, receipt.document_id, "13", "Ban hành nhầm")
    with database.transaction() as session:
        document = session.scalar(select(Document))
        assert document.recalled_at == clock.now
        assert [r.recall_state for r in document.recipients] == ["15"], "unfetched copy withdrawn at once"


@pytest.mark.parametrize(
    ("secret", "expires", "revoked"),
    [("wrong", None, None), (None, T0 - timedelta(seconds=1), None), (None, None, T0)],
    ids=["wrong-secret", "expired", "revoked"],
)
def test_credentials_that_do_not_authenticate(service, database, secret, expires, revoked) -> None:
    with database.transaction() as session:
        credential = session.scalar(select(Credential).join(Agency).where(Agency.code == SENDER))
        credential.expires_at, credential.revoked_at = expires, revoked
    with pytest.raises(AuthenticationFailed):
        service.authenticate(SENDER, secret or f"s-{SENDER}")


def test_a_send_costs_three_statements_on_postgresql_and_seven_on_sqlite(service, database) -> None:
    """The send path's round trips are its main cost on PostgreSQL (README "Performance"); adding one
    should be a decision, not an accident. Authentication, the addressee lookup (which also says
    whether the DocumentId was used), then the document, its recipients, its queue items and the audit
    entry: on PostgreSQL one statement, their INSERTs in a WITH around the call of the append function
    (``Database.write_alone``); on SQLite the three INSERTs, the head, then the entry's INSERT. A later
    send to addressees the worker has read, the directory unchanged, skips the lookup."""
    postgresql = database.dialect_name == "postgresql"
    for number, lookup in ((1, True), (2, False)):
        with counting(database.engine) as executed:
            sender = service.authenticate(SENDER, f"s-{SENDER}")
            service.send_document(sender, stage(service, letter(document_id=f"doc-{number}")))
        statements = [s for s in executed if not s.startswith(("BEGIN", "COMMIT"))]  # SQLite's are statements too
        inserts = [part.split()[0] for s in statements for part in s.split("INSERT INTO ")[1:]]
        assert inserts == ["documents", "recipients", "deliveries"] + ([] if postgresql else ["audit_log"]), executed
        assert ("gateway_audit_append" in statements[-1]) == postgresql, statements[-1]
        assert statements[-1].startswith("WITH _w0 AS (INSERT INTO documents") == postgresql, statements[-1]
        assert sum("FROM agencies" in s for s in statements) == 1 + lookup, executed
        assert len(statements) == (3 if postgresql else 7) - (not lookup), executed


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_send_on_postgresql_is_three_round_trips_then_two(service, monkeypatch) -> None:
    """Authentication and the addressee read, then one statement in autocommit: the three INSERTs and
    the audit append (migration 0011 checks the entry's hash before it writes it), committed by the
    server when it ends. No BEGIN, no pipeline, and the driver's commit is never called. Two round
    trips once the worker knows the addressees."""
    psycopg = pytest.importorskip("psycopg")
    commits: list[object] = []
    driver_commit = psycopg.Connection.commit

    def commit(connection: object) -> None:
        commits.append(connection.pgconn.transaction_status)  # type: ignore[attr-defined]
        driver_commit(connection)

    monkeypatch.setattr(psycopg.Connection, "commit", commit)
    for number, lookup in ((1, [False]), (2, [])):
        with pipelined(service.db.engine) as executed:
            sender = service.authenticate(SENDER, f"s-{SENDER}")
            service.send_document(sender, stage(service, letter(document_id=f"doc-{number}")))
        assert [in_pipeline for _, in_pipeline in executed] == [False, *lookup, False], executed
        assert "gateway_audit_append" in executed[-1][0] and executed[-1][0].startswith("WITH "), executed[-1]
        assert commits == [], commits
    with service.db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 2
