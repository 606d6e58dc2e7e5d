"""The audit chain: appends link up, verify finds the first edited, deleted or reordered row."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from store.conftest import INSERT_AGENCY, agency_row

from gateway.errors import Unavailable
from gateway.store import audit, evidence
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, AuditEntry, Document

MakeAgency = Callable[..., Agency]
MakeDocument = Callable[..., Document]

T0 = datetime(2026, 11, 4, 8, 0, tzinfo=UTC)


def _append_many(database: Database, count: int) -> list[AuditEntry]:
    entries = []
    with database.transaction() as session:
        for i in range(count):
            detail = {"n": i, "note": "Văn bản đến", "recipients": ["000.00.02.H01"]}
            entries.append(audit.append(session, "000.00.01.H01", "send", f"doc-{i % 3}", detail, T0))
    return entries


def test_chain_links_and_verifies(database: Database) -> None:
    entries = _append_many(database, 5)
    assert entries[0].prev_hash == audit.GENESIS_HASH
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    with database.transaction() as session:
        assert audit.verify(session, batch=2) == audit.VerifyResult(ok=True, checked=5)
        assert [e.id for e in audit.entries_for_document(session, "doc-1")] == [entries[1].id, entries[4].id]


def test_a_batch_of_entries_links_up_with_single_appends(database: Database) -> None:
    """append_many writes what the same appends one by one would: ids in order, each linking to the last."""
    before = _append_many(database, 2)
    records = [
        audit.Record("000.00.02.H01", "ack", f"doc-{i}", {"item_id": f"item-{i}", "kind": "document"})
        for i in range(30)
    ]
    with database.transaction() as session:
        batch = audit.append_many(session, records, T0)
        assert audit.append_many(session, [], T0) == []
    after = _append_many(database, 1)
    chain = [*before, *batch, *after]
    assert [e.id for e in chain] == sorted(e.id for e in chain)
    assert [e.prev_hash for e in chain[1:]] == [e.hash for e in chain[:-1]]
    assert [(e.action, e.document_id) for e in batch] == [("ack", f"doc-{i}") for i in range(30)]
    with database.transaction() as session:
        assert audit.verify(session, batch=7) == audit.VerifyResult(ok=True, checked=33)
        stored = session.execute(text("SELECT id, hash FROM audit_log ORDER BY id")).all()
    assert [tuple(row) for row in stored] == [(e.id, e.hash) for e in chain]


def test_entries_written_with_rows_chain_on_and_take_the_next_ids(database: Database) -> None:
    """insert_then_append (sends, fetches, acknowledgements) writes what append_many would: on SQLite it
    runs the head read and one INSERT for all the entries through the driver, giving each the id after
    the head's; the chain then goes on through append as before, and verifies whole."""
    before = _append_many(database, 2)
    records = [audit.Record("000.00.02.H01", "ack", f"doc-{i}", {"item_id": f"item-{i}"}) for i in range(3)]
    with database.transaction() as session:
        audit.insert_then_append(database, session, [], records, T0)
    with database.transaction() as session:
        audit.insert_then_append(database, session, [], [], T0)  # nothing to append: nothing written
    after = _append_many(database, 1)
    with database.transaction() as session:
        rows = session.execute(text("SELECT id, action, prev_hash, hash FROM audit_log ORDER BY id")).all()
        assert audit.verify(session) == audit.VerifyResult(ok=True, checked=6)
    assert [row.action for row in rows] == ["send", "send", "ack", "ack", "ack", "send"]
    assert [row.id for row in rows[2:5]] == [before[-1].id + 1, before[-1].id + 2, before[-1].id + 3]
    assert rows[2].prev_hash == before[-1].hash and after[0].prev_hash == rows[4].hash


def _agency_codes(database: Database) -> list[str]:
    with database.transaction(readonly=True) as session:
        return list(session.scalars(select(Agency.code).order_by(Agency.code)))


def test_rows_written_alone_with_their_entry_chain_on(database: Database) -> None:
    """write_alone, a send's common case: the rows and the entry are one transaction of their own (on
    PostgreSQL one statement), chained between the appends before and after. A refused row leaves
    neither its sibling rows nor the entry, and the chain goes on from where it was."""
    before = _append_many(database, 2)
    record = audit.Record("000.00.01.H01", "send", "doc-a", {"n": 1, "note": "Văn bản đi"})
    rows = [(INSERT_AGENCY, [agency_row("000.00.02.H01"), agency_row("000.00.02.H02")])]
    audit.write_alone(database, rows, record, T0)
    refused = [(INSERT_AGENCY, [agency_row("000.00.02.H03")]), (INSERT_AGENCY, [agency_row("000.00.02.H01")])]
    with pytest.raises(IntegrityError):
        audit.write_alone(database, refused, audit.Record("000.00.01.H01", "send", "doc-b", {"n": 2}), T0)
    audit.write_alone(database, [], audit.Record("000.00.01.H01", "send", "doc-c", {"n": 3}), T0)
    after = _append_many(database, 1)
    assert _agency_codes(database) == ["000.00.02.H01", "000.00.02.H02"]
    with database.transaction() as session:
        assert audit.verify(session) == audit.VerifyResult(ok=True, checked=5)
        chain = session.execute(text("SELECT document_id, prev_hash, hash FROM audit_log ORDER BY id")).all()
    assert [entry.document_id for entry in chain] == ["doc-0", "doc-1", "doc-a", "doc-c", "doc-0"]
    assert chain[2].prev_hash == before[-1].hash and after[0].prev_hash == chain[3].hash


def test_empty_chain_verifies(database: Database) -> None:
    with database.transaction() as session:
        assert audit.verify(session) == audit.VerifyResult(ok=True, checked=0)


def test_hash_covers_the_stored_form(database: Database) -> None:
    at = datetime(2026, 11, 4, 15, 0, 0, 1, tzinfo=UTC) + timedelta(hours=0)
    with database.transaction() as session:
        entry = audit.append(session, "op", "recall", None, {"b": 1, "a": [1.5, None, "x"]}, at)
    assert entry.detail == '{"a":[1.5,null,"x"],"b":1}'
    decoded = {"a": [1.5, None, "x"], "b": 1}
    assert entry.hash == audit.compute_hash(audit.GENESIS_HASH, at, "op", "recall", None, decoded)


def test_edited_row_is_reported(database: Database) -> None:
    entries = _append_many(database, 6)
    with database.transaction() as session:
        edit = text("UPDATE audit_log SET detail = :detail WHERE id = :id")
        session.execute(edit, {"detail": '{"n":99}', "id": entries[3].id})
    with database.transaction() as session:
        result = audit.verify(session, batch=4)
    assert (result.ok, result.checked, result.first_broken_id) == (False, 3, entries[3].id)
    assert result.reason is not None and "edited" in result.reason


def test_edited_row_with_recomputed_hash_breaks_the_next_link(database: Database) -> None:
    entries = _append_many(database, 4)
    target = entries[1]
    forged = audit.compute_hash(target.prev_hash, target.at, target.actor, "forged", target.document_id, {})
    with database.transaction() as session:
        session.execute(
            text("UPDATE audit_log SET action = 'forged', detail = '{}', hash = :h WHERE id = :id"),
            {"h": forged, "id": target.id},
        )
    with database.transaction() as session:
        result = audit.verify(session)
    assert (result.ok, result.first_broken_id) == (False, entries[2].id)


def test_deleted_row_is_reported_at_its_successor(database: Database) -> None:
    entries = _append_many(database, 5)
    with database.transaction() as session:
        session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": entries[2].id})
    with database.transaction() as session:
        result = audit.verify(session)
    assert (result.ok, result.checked, result.first_broken_id) == (False, 2, entries[3].id)
    assert result.reason is not None and "deleted" in result.reason


def test_reordered_rows_are_reported(database: Database) -> None:
    entries = _append_many(database, 5)
    a, b = entries[1], entries[2]
    columns = ("at", "actor", "action", "document_id", "detail", "prev_hash", "hash")
    assignments = ", ".join(f"{c} = :{c}" for c in columns)
    move = text(f"UPDATE audit_log SET {assignments} WHERE id = :id")
    with database.transaction() as session:
        # hash is unique: park a's row on a placeholder hash while the two rows trade places.
        session.execute(text("UPDATE audit_log SET hash = :h WHERE id = :id"), {"h": "f" * 64, "id": a.id})
        session.execute(move, {**{c: getattr(a, c) for c in columns}, "id": b.id, "hash": "e" * 64})
        session.execute(move, {**{c: getattr(b, c) for c in columns}, "id": a.id})
        session.execute(text("UPDATE audit_log SET hash = :h WHERE id = :id"), {"h": a.hash, "id": b.id})
    with database.transaction() as session:
        result = audit.verify(session)
    assert (result.ok, result.first_broken_id) == (False, a.id)


def test_naive_time_is_refused(database: Database) -> None:
    with pytest.raises(ValueError, match="naive"), database.transaction() as session:
        audit.append(session, "op", "x", None, {}, datetime(2026, 1, 1))


@pytest.mark.postgres
def test_a_database_that_chains_differently_writes_nothing(pg_url: str) -> None:
    """PostgreSQL hashes the entries (migration 0007, called by 0010); the gateway checks each hash before commit."""
    pg_database = Database(pg_url)
    pg_database.upgrade()
    _append_many(pg_database, 2)
    migration = import_module("gateway.store.migrations.versions.0007_audit_append")
    swapped = migration.FUNCTION.replace("head || records[i]", "records[i] || head")
    assert swapped != migration.FUNCTION
    refused = r"chained audit entry \d+ differently; nothing was written"
    with pytest.raises(RuntimeError, match=refused), pg_database.transaction() as session:
        session.execute(text(swapped))  # rolled back with the append, like everything else here
        audit.append(session, "000.00.01.H01", "send", "doc-x", {"n": 9}, T0)
    with pg_database.transaction() as session:
        assert audit.verify(session) == audit.VerifyResult(ok=True, checked=2)
    _append_many(pg_database, 1)  # the shipped function is back: the transaction rolled back whole
    pg_database.dispose()


def test_migration_0011_moves_0007s_hash_expression_or_refuses() -> None:
    """0007's function calls gateway_audit_hash after 0011, and only its hash expression changed; a
    function text without that expression is refused rather than left with a second hash definition."""
    migration = import_module("gateway.store.migrations.versions.0011_audit_append_one")
    assert migration.HASH_0007 in migration.FUNCTION_0007
    assert migration.CHAIN_0007.replace("gateway_audit_hash(head, records[i])", migration.HASH_0007) == (
        migration.FUNCTION_0007
    )
    assert migration.HASH_0007 not in migration.CHAIN_0007
    with pytest.raises(ValueError, match="not the one migration 0011 moves"):
        migration.moved_hash(migration.FUNCTION_0007.replace("head || records[i]", "records[i] || head"))


@pytest.mark.postgres
def test_one_entry_written_alone_is_checked_before_it_is_written(pg_url: str) -> None:
    """Migration 0011: the gateway passes the entry's hash after the genesis hash as it computes it; the
    function computes the same with the chain's expression and refuses the entry when they differ. A
    send's rows and entry are one statement the server commits on its own, so that check is what
    keeps an entry the gateway would not accept (and the rows with it) from being committed."""
    pg_database = Database(pg_url)
    pg_database.upgrade()
    _append_many(pg_database, 2)
    swapped = (
        "CREATE OR REPLACE FUNCTION gateway_audit_hash(prev_hash text, record text) RETURNS varchar "
        "LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT encode(sha256(convert_to(record || prev_hash, 'UTF8')), 'hex') $$"
    )
    record = audit.Record("000.00.01.H01", "send", "doc-x", {"n": 9, "note": "Văn bản đi"})
    rows = [(INSERT_AGENCY, [agency_row("000.00.02.H01")])]
    with pg_database.transaction() as session:
        session.execute(text(swapped))
    with pytest.raises(DBAPIError, match="hashes audit entries differently"):
        audit.write_alone(pg_database, rows, record, T0)
    assert _agency_codes(pg_database) == []
    with pg_database.transaction() as session:
        assert audit.verify(session) == audit.VerifyResult(ok=True, checked=2)
        session.execute(text(import_module("gateway.store.migrations.versions.0011_audit_append_one").HASH))
    audit.write_alone(pg_database, rows, record, T0)
    assert _agency_codes(pg_database) == ["000.00.02.H01"]
    with pg_database.transaction() as session:
        assert audit.verify(session) == audit.VerifyResult(ok=True, checked=3)
    pg_database.dispose()


@pytest.mark.postgres
def test_rows_written_alone_give_up_on_the_chains_lock_after_the_wait_bound(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statement's append waits for the chain's lock at most APPEND_LOCK_WAIT_MS: then Unavailable
    (the clerk retries), nothing written; once the lock is free the same writes go in."""
    pg_database = Database(pg_url)
    pg_database.upgrade()
    monkeypatch.setattr(audit, "APPEND_LOCK_WAIT_MS", 200)
    rows = [(INSERT_AGENCY, [agency_row("000.00.02.H01")])]
    record = audit.Record("000.00.01.H01", "send", "doc-x", {"n": 1})
    try:
        with pg_database.transaction() as holder:
            holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": audit.AUDIT_LOCK_KEY})
            with pytest.raises(Unavailable):
                audit.write_alone(pg_database, rows, record, T0)
        assert _agency_codes(pg_database) == []
        audit.write_alone(pg_database, rows, record, T0)
        assert _agency_codes(pg_database) == ["000.00.02.H01"]
    finally:
        pg_database.dispose()


@pytest.mark.postgres
def test_an_append_bounds_the_lock_waits_of_the_rest_of_its_transaction(pg_url: str) -> None:
    """Migration 0010: from the append on, lock waits end after APPEND_LOCK_WAIT_MS; other transactions as before."""
    pg_database = Database(pg_url)
    pg_database.upgrade()
    with pg_database.transaction() as session:
        assert session.scalar(text("SHOW lock_timeout")) == "0"
        audit.append(session, "000.00.01.H01", "send", "doc-x", {"n": 1}, T0)
        assert session.scalar(text("SHOW lock_timeout")) == f"{audit.APPEND_LOCK_WAIT_MS // 1000}s"
    with pg_database.transaction() as session:
        assert session.scalar(text("SHOW lock_timeout")) == "0"
    pg_database.dispose()


@pytest.mark.postgres
def test_a_node_not_yet_upgraded_still_appends_after_migration_0010(pg_url: str) -> None:
    """Rolling upgrade: migration 0007's function stays beside 0010's, and the two chain onto each other."""
    pg_database = Database(pg_url)
    pg_database.upgrade()
    _append_many(pg_database, 1)
    record = audit.Record("000.00.01.H01", "send", "doc-old", {"n": 2})
    prepared = audit._Prepared.of([record], T0)
    old_call = text(
        "SELECT entry_id, entry_prev_hash, entry_hash FROM gateway_audit_append(:key, :at, ARRAY[:actor], "
        "ARRAY[:action], ARRAY[:document_id], ARRAY[:detail], ARRAY[:record])"
    )
    values = {"actor": record.actor, "action": record.action, "document_id": record.document_id}
    values |= {"key": audit.AUDIT_LOCK_KEY, "at": T0, "detail": prepared.details[0], "record": prepared.texts[0]}
    with pg_database.transaction() as session:
        prepared.checked(session.execute(old_call, values).all())
    _append_many(pg_database, 1)
    with pg_database.transaction() as session:
        assert audit.verify(session) == audit.VerifyResult(ok=True, checked=3)
    pg_database.dispose()


@pytest.mark.slow
def test_concurrent_appends_form_one_chain(database: Database) -> None:
    """Eight threads, each appending in its own transactions, still produce a single valid chain."""
    workers, per_worker = 8, 25
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def append_some(worker: int) -> None:
        try:
            start.wait()
            for i in range(per_worker):
                with database.transaction() as session:
                    audit.append(session, f"agency-{worker}", "status", None, {"i": i}, T0)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=append_some, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.transaction() as session:
        assert audit.verify(session, batch=17) == audit.VerifyResult(ok=True, checked=workers * per_worker)


def test_evidence_of_one_document(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument, tmp_path: Path
) -> None:
    """audit export's evidence: the document's rows and entries, the chain, and whether its file still matches."""
    blobs = BlobStore(tmp_path / "blobs")
    sha256, _size = blobs.put_bytes(b"<edXMLEnvelope/>")
    with database.transaction() as session:
        sender = make_agency(session, "000.00.00.G22")
        document_id = make_document(session, sender, sha256=sha256).id
        audit.append(session, sender.code, "send", document_id, {"to": ["000.00.00.H41"]}, T0)
        audit.append(session, sender.code, "send", "another-document", {}, T0)
    assert evidence.collect(database, blobs, "no-such-document", T0) is None

    found = evidence.collect(database, blobs, document_id, T0)
    assert found is not None
    assert found.document["id"] == document_id and found.document["sender_code"] == "000.00.00.G22"
    assert [(e["actor"], e["action"]) for e in found.audit_entries] == [("000.00.00.G22", "send")]
    assert found.blob_intact is True
    assert found.audit_chain == {"ok": True, "checked": 2, "first_broken_id": None}
    written = json.loads(found.to_json())
    assert list(written) == [
        "exported_at",
        "document",
        "recipients",
        "deliveries",
        "status_events",
        "audit_entries",
        "blob_intact",
        "audit_chain",
    ]
    assert written["exported_at"] == "2026-11-04T08:00:00+00:00"
    assert written["document"]["promulgation_date"] == "2026-11-01"

    stored = blobs.path(sha256)
    stored.chmod(0o644)
    stored.write_bytes(b"<edXMLEnvelope>altered</edXMLEnvelope>")
    altered = evidence.collect(database, blobs, document_id, T0)
    assert altered is not None and altered.blob_intact is False
