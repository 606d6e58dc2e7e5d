"""Append-only, hash-chained audit log.

Each entry stores ``prev_hash`` (the previous entry's ``hash``, or 64 zeros for the first) and
``hash = sha256(prev_hash + canonical_json(at, actor, action, document_id, detail))``. The row id
is deliberately not hashed (ids are assigned by the database), but entries are chained in id
order, so editing, deleting or reordering a row breaks the chain from that row on, and
:func:`verify` reports where. Truncating the newest entries is not detectable from the chain
alone; compare the head hash with one recorded elsewhere for that.

Appends must see the true head: on PostgreSQL each append takes a transaction-scoped advisory lock
before reading it, so concurrent appends queue up until the appending transaction ends (append as
late in a transaction as practical); on SQLite ``BEGIN IMMEDIATE`` already serialises writers. On
PostgreSQL one statement does the whole append (``gateway_audit_append``, migrations 0007 and 0010:
lock, head, hash, insert); the gateway hands it each entry's canonical record and checks the hashes it
returns, and a single entry's function checks its hash before it writes (migration 0011), so a send
can write its rows and its entry as one statement that the server commits on its own
(:func:`write_alone`). In a longer transaction, from the append to its end the connection holds the
worker (gateway/store/blocking.py), so the lock is released as soon as the database answers; the
function's ``lock_timeout`` (:data:`APPEND_LOCK_WAIT_MS`) keeps that from ever freezing a worker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, bindparam, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql import Insert, TextClause

from gateway.store import blocking
from gateway.store.database import SQLITE_BUSY_SECONDS, Database, DriverTransaction
from gateway.store.models import AuditEntry, UTCDateTime, table_of

GENESIS_HASH = "0" * 64
# The audit chain's PostgreSQL advisory lock key: the ASCII bytes of "edxml" then 0x000002, read as a
# big-endian signed 64-bit integer (positive, so it fits pg_advisory_xact_lock(bigint)). Any constant
# would do; other advisory locks of the gateway must not use it.
AUDIT_LOCK_KEY = 0x6564_786D_6C00_0002
APPEND_LOCK_WAIT_MS = SQLITE_BUSY_SECONDS * 1000
"""PostgreSQL: how long a transaction that appends waits for any lock from then on, in milliseconds.

The chain's lock is held for a few milliseconds per transaction, so a wait this long means a holder
that is not moving: the call then fails as "busy, retry" (nothing stored) instead of waiting on. In a
gevent worker such a wait does not yield (gateway/store/blocking.py), so this is also the longest a
worker can stand still behind a request of its own that yielded while holding a lock. The same bound
as SQLite writers' wait for the write lock (``SQLITE_BUSY_SECONDS``), so both backends give up alike."""


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 text kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def compute_hash(prev_hash: str, at: datetime, actor: str, action: str, document_id: str | None, detail: Any) -> str:
    """The chain hash of one entry; ``detail`` is the decoded JSON value."""
    return _chained(prev_hash, _record_text(at, actor, action, document_id, detail))


def _record_text(at: datetime, actor: str, action: str, document_id: str | None, detail: Any) -> str:
    """What an entry's hash covers after the previous hash: independent of the chain's head."""
    record = {"at": _iso(at), "actor": actor, "action": action, "document_id": document_id, "detail": detail}
    return canonical_json(record)


def _chained(prev_hash: str, record_text: str) -> str:
    return hashlib.sha256((prev_hash + record_text).encode("utf-8")).hexdigest()


_AUDIT_LOG = table_of(AuditEntry)
_HEAD = select(_AUDIT_LOG.c.id, _AUDIT_LOG.c.hash).order_by(_AUDIT_LOG.c.id.desc()).limit(1)
"""The chain head's id and hash (SQLite; on PostgreSQL the append function reads it), built once: every
send and status report reads it, and building it per call through the ORM cost more than running it."""

_APPEND = text(
    "SELECT entry_id, entry_prev_hash, entry_hash FROM gateway_audit_append(:key, :lock_wait_ms, :at, :actors, "
    ":actions, :document_ids, :details, :records)"
).bindparams(
    bindparam("at", type_=UTCDateTime()),
    *(bindparam(name, type_=ARRAY(Text)) for name in ("actors", "actions", "document_ids", "details", "records")),
)
"""PostgreSQL: lock the chain, read its head, hash and insert the entries, in one round trip (migration 0010)."""

_APPEND_ONE = text(
    "SELECT entry_id, entry_prev_hash, entry_hash FROM gateway_audit_append(:key, :lock_wait_ms, :at, :actor, "
    ":action, :document_id, :detail, :record, :genesis_probe)"
).bindparams(bindparam("at", type_=UTCDateTime()))
"""PostgreSQL: :data:`_APPEND` for one entry, its fields as scalars, its hash checked first (migration 0011)."""


@dataclass(frozen=True)
class Record:
    """What one entry says, before the chain gives it its place: for :func:`append_many`."""

    actor: str
    action: str
    document_id: str | None
    detail: dict[str, Any]


def append(
    session: Session,
    actor: str,
    action: str,
    document_id: str | None,
    detail: dict[str, Any],
    at: datetime,
) -> AuditEntry:
    """Add one entry at the head of the chain (within the caller's transaction); return it as written."""
    return append_many(session, [Record(actor, action, document_id, detail)], at)[0]


def append_many(session: Session, records: Sequence[Record], at: datetime) -> list[AuditEntry]:
    """Add entries at the head of the chain, in order, all at ``at``; return them as written.

    A fixed number of statements whatever their number (acknowledging a batch of items appends one
    entry per item): on SQLite a head read and one INSERT, on PostgreSQL one call that locks, reads,
    hashes and inserts. The returned entries are not attached to the session: every send and status
    report appends, and the ORM's insert path cost more than the rest. The chain is read in id order:
    on SQLite the entries take the ids after the head's (:meth:`_Prepared.after`); on PostgreSQL the
    function numbers them in the records' order under the chain's lock, and the hashes it computed
    must be the ones computed here, otherwise the caller's transaction fails and nothing is written.
    """
    if not records:
        return []
    prepared = _Prepared.of(records, at)
    if session.get_bind().dialect.name == "postgresql":
        blocking.hold_worker(session)
        rows = prepared.checked(session.execute(*prepared.call()).all())
    else:
        rows = prepared.after(session.execute(_HEAD).first())
        session.execute(_INSERT_ENTRIES, rows)
    return [AuditEntry(**row) for row in rows]


def insert_then_append(
    db: Database,
    session: Session | DriverTransaction,
    inserts: Sequence[tuple[Insert, Sequence[Mapping[str, Any]]]],
    records: Sequence[Record],
    at: datetime,
) -> None:
    """INSERTs, then :func:`append_many`: on PostgreSQL all in one round trip (:meth:`Database.pipeline`).

    The chain's lock is taken after the rows' INSERTs, as when the append follows them on its own. On
    SQLite the statements of :func:`append_many` run through the driver instead of the session, and
    the entries' JSON is built before the first statement: everything from that one on runs while
    every other writer waits for the write lock. PostgreSQL's hashes are checked as in
    :func:`append_many`; the entries are not returned: no caller reads them, and building them cost
    more than writing them.
    """
    if not records:
        db.pipeline(session, inserts)
        return
    _insert_then_write(db, session, inserts, _Prepared.of(records, at))


def _insert_then_write(
    db: Database,
    session: Session | DriverTransaction,
    inserts: Sequence[tuple[Insert, Sequence[Mapping[str, Any]]]],
    prepared: _Prepared,
) -> None:
    if db.dialect_name != "postgresql":
        (head,) = db.pipeline(session, inserts, [(_HEAD, {})])
        db.pipeline(session, [(_INSERT_ENTRIES, prepared.after(head[0] if head else None))])
        return
    if not isinstance(session, Session):
        raise TypeError("on PostgreSQL the append runs in a session's transaction")
    blocking.hold_worker(session)
    prepared.checked(db.pipeline(session, inserts, [prepared.call()])[0])


def write_alone(
    db: Database, inserts: Sequence[tuple[Insert, Sequence[Mapping[str, Any]]]], record: Record, at: datetime
) -> None:
    """INSERTs and their one entry as a transaction of their own: a send's, when it writes nothing else.

    On PostgreSQL they are one statement (:meth:`Database.write_alone`), committed by the server when
    it ends: the chain's lock is held while the statement runs and no longer, since no COMMIT waits
    for the worker to come back. The gateway cannot check the entry's hash before that commit, so
    the function checks it first: it refuses the entry (and the statement writes nothing) when its
    hash after the genesis hash differs from the one computed here (migration 0011). The hashes it
    returns are checked all the same. On SQLite: :func:`insert_then_append` in a transaction of the
    driver's own (:meth:`Database.writing`).
    """
    prepared = _Prepared.of([record], at)
    if db.dialect_name != "postgresql":
        with db.writing() as transaction:
            _insert_then_write(db, transaction, inserts, prepared)
        return
    prepared.checked(db.write_alone(inserts, prepared.call()))


@dataclass
class Writes:
    """INSERTs and audit entries gathered from several steps of one transaction, to write together.

    A first fetch records the copy's 01 (its queue item and audit entry) and its own audit entry:
    gathered here, they go out in one round trip on PostgreSQL (:func:`insert_then_append`).
    """

    inserts: list[tuple[Insert, Sequence[Mapping[str, Any]]]] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    def write(self, db: Database, session: Session, at: datetime) -> None:
        insert_then_append(db, session, self.inserts, self.records, at)


@dataclass(frozen=True)
class _Prepared:
    """Entries as far as they can be written before the chain's head is known."""

    records: Sequence[Record]
    at: datetime
    details: list[str]
    """Each detail's canonical JSON, as stored."""
    texts: list[str]
    """What each hash covers after the previous hash."""

    @classmethod
    def of(cls, records: Sequence[Record], at: datetime) -> _Prepared:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"naive datetime {at!r}: pass a timezone-aware UTC time")
        at = at.astimezone(UTC)
        # Round-trip each detail through JSON so the hash covers exactly what verify() will decode from the row.
        details = [canonical_json(record.detail) for record in records]
        texts = [
            _record_text(at, record.actor, record.action, record.document_id, json.loads(detail))
            for record, detail in zip(records, details, strict=True)
        ]
        return cls(records, at, details, texts)

    def call(self) -> tuple[TextClause, dict[str, Any]]:
        """PostgreSQL: the append and its parameters, :data:`_APPEND_ONE` for one entry, :data:`_APPEND` for more.

        One entry's ``genesis_probe`` is its hash after :data:`GENESIS_HASH` as computed here: the
        function refuses the entry when its own hash of the same differs (migration 0011).
        """
        common = {"key": AUDIT_LOCK_KEY, "lock_wait_ms": APPEND_LOCK_WAIT_MS, "at": self.at}
        if len(self.records) != 1:
            return _APPEND, common | {
                "actors": [record.actor for record in self.records],
                "actions": [record.action for record in self.records],
                "document_ids": [record.document_id for record in self.records],
                "details": self.details,
                "records": self.texts,
            }
        (record,), (detail,), (record_text,) = self.records, self.details, self.texts
        return _APPEND_ONE, common | {
            "actor": record.actor,
            "action": record.action,
            "document_id": record.document_id,
            "detail": detail,
            "record": record_text,
            "genesis_probe": _chained(GENESIS_HASH, record_text),
        }

    def after(self, head: Sequence[Any] | None) -> list[dict[str, Any]]:
        """SQLite: the entries' rows, chained after ``head`` (its id and hash; None for an empty log).

        Each takes the next id after the head's, the one SQLite would give it: the caller holds the
        write lock, so no other entry can come between the head read and the INSERT.
        """
        last_id, prev_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS_HASH)
        rows = []
        for offset, (record, detail, record_text) in enumerate(
            zip(self.records, self.details, self.texts, strict=True), start=1
        ):
            entry_hash = _chained(prev_hash, record_text)
            rows.append({"id": last_id + offset, **_row(self.at, record, detail, prev_hash, entry_hash)})
            prev_hash = entry_hash
        return rows

    def checked(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """PostgreSQL: the rows ``_APPEND`` wrote, once its hashes are checked against the ones computed here."""
        written = []
        prev_hash = rows[0][1] if rows else GENESIS_HASH
        for (entry_id, entry_prev, entry_hash), record, detail, record_text in zip(
            rows, self.records, self.details, self.texts, strict=True
        ):
            if entry_prev != prev_hash or entry_hash != _chained(prev_hash, record_text):
                raise RuntimeError(f"the database chained audit entry {entry_id} differently; nothing was written")
            written.append({"id": entry_id, **_row(self.at, record, detail, prev_hash, entry_hash)})
            prev_hash = entry_hash
        return written


def _row(at: datetime, record: Record, detail: str, prev_hash: str, entry_hash: str) -> dict[str, Any]:
    return {
        "at": at,
        "actor": record.actor,
        "action": record.action,
        "document_id": record.document_id,
        "detail": detail,
        "prev_hash": prev_hash,
        "hash": entry_hash,
    }


_INSERT_ENTRIES = insert(_AUDIT_LOG)
"""SQLite: entries with their ids (:meth:`_Prepared.after`); several rows go in one ``executemany``."""


_BROKEN_LINK = "prev_hash does not match the previous entry's hash (a row was deleted, inserted or reordered)"
_BAD_HASH = "hash does not match the entry's content (the row was edited)"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`: ``first_broken_id`` and ``reason`` are set when ``ok`` is false."""

    ok: bool
    checked: int
    first_broken_id: int | None = None
    reason: str | None = None


def verify(session: Session, batch: int = 1000) -> VerifyResult:
    """Walk the whole chain in id order, ``batch`` rows at a time, and report the first break."""
    expected_prev = GENESIS_HASH
    checked = 0
    last_id: int | None = None
    while True:
        # Plain column tuples, not ORM objects: nothing accumulates in the session while streaming.
        query = (
            select(
                AuditEntry.id,
                AuditEntry.at,
                AuditEntry.actor,
                AuditEntry.action,
                AuditEntry.document_id,
                AuditEntry.detail,
                AuditEntry.prev_hash,
                AuditEntry.hash,
            )
            .order_by(AuditEntry.id)
            .limit(batch)
        )
        if last_id is not None:
            query = query.where(AuditEntry.id > last_id)
        rows = session.execute(query).all()
        if not rows:
            return VerifyResult(ok=True, checked=checked)
        for row in rows:
            if row.prev_hash != expected_prev:
                return VerifyResult(False, checked, row.id, _BROKEN_LINK)
            try:
                detail = json.loads(row.detail)
            except ValueError:
                return VerifyResult(False, checked, row.id, "detail is not valid JSON (edited)")
            recomputed = compute_hash(row.prev_hash, row.at, row.actor, row.action, row.document_id, detail)
            if recomputed != row.hash:
                return VerifyResult(False, checked, row.id, _BAD_HASH)
            expected_prev = row.hash
            checked += 1
        last_id = rows[-1].id


def entries_for_document(session: Session, document_id: str) -> list[AuditEntry]:
    """Every audit entry about one document, oldest first."""
    query = select(AuditEntry).where(AuditEntry.document_id == document_id).order_by(AuditEntry.id)
    return list(session.scalars(query))
