"""Append-only, hash-chained audit log.

Each entry stores ``prev_hash`` (the previous entry's ``hash``, or 64 zeros for the first) and
``hash = sha256(prev_hash + canonical_json(at, actor, action, document_id, detail))``. The row id
is deliberately not hashed (ids are assigned by the database), but entries are chained in id
order, so editing, deleting or reordering a row breaks the chain from that row on, and
:func:`verify` reports where. Truncating the newest entries is not detectable from the chain
alone; compare the head hash with one recorded elsewhere for that.

Appends must see the true head: on PostgreSQL each append takes a transaction-scoped advisory lock
before reading it, so concurrent appends queue up until the appending transaction ends (append as
late in a transaction as practical); on SQLite ``BEGIN IMMEDIATE`` already serialises writers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from gateway.store.models import AuditEntry, table_of

GENESIS_HASH = "0" * 64
# The audit chain's PostgreSQL advisory lock key: the ASCII bytes of "edxml" then 0x000002, read as a
# big-endian signed 64-bit integer (positive, so it fits pg_advisory_xact_lock(bigint)). Any constant
# would do; other advisory locks of the gateway must not use it.
AUDIT_LOCK_KEY = 0x6564_786D_6C00_0002


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 text kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def compute_hash(prev_hash: str, at: datetime, actor: str, action: str, document_id: str | None, detail: Any) -> str:
    """The chain hash of one entry; ``detail`` is the decoded JSON value."""
    record = {"at": _iso(at), "actor": actor, "action": action, "document_id": document_id, "detail": detail}
    return hashlib.sha256((prev_hash + canonical_json(record)).encode("utf-8")).hexdigest()


_HEAD = select(table_of(AuditEntry).c.hash).order_by(table_of(AuditEntry).c.id.desc()).limit(1)
"""The chain head's hash (SQLite; PostgreSQL locks and reads it in one call), built once: every send and
status report reads it, and building it per call through the ORM cost more than running it."""

_LOCK_HEAD = text("SELECT gateway_audit_lock_head(:key)")
"""PostgreSQL: take the chain's lock and read its head in one round trip (migration 0002)."""


def _head_hash(session: Session) -> str:
    head: str | None = session.execute(_HEAD).scalar()
    return head or GENESIS_HASH


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

    One head read (and on PostgreSQL one lock) and one INSERT whatever their number: acknowledging a
    batch of items appends one entry per item. Rows go in through a Core INSERT and the returned
    entries are not attached to the session: every send and status report appends, and the ORM's
    insert path cost more than the rest. The ids the database gives must follow the order of the
    records (the chain is read in id order); they are checked, and otherwise nothing is written.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: pass a timezone-aware UTC time")
    if not records:
        return []
    if session.get_bind().dialect.name == "postgresql":
        head = session.scalar(_LOCK_HEAD, {"key": AUDIT_LOCK_KEY})
        prev_hash = head or GENESIS_HASH
    else:
        prev_hash = _head_hash(session)
    at = at.astimezone(UTC)
    rows = []
    for record in records:
        # Round-trip through JSON so the hash covers exactly what verify() will decode from the row.
        detail_text = canonical_json(record.detail)
        decoded = json.loads(detail_text)
        entry_hash = compute_hash(prev_hash, at, record.actor, record.action, record.document_id, decoded)
        rows.append(
            {
                "at": at,
                "actor": record.actor,
                "action": record.action,
                "document_id": record.document_id,
                "detail": detail_text,
                "prev_hash": prev_hash,
                "hash": entry_hash,
            }
        )
        prev_hash = entry_hash
    if len(rows) == 1:
        ids = [session.execute(_INSERT, rows[0]).scalar_one()]
    else:
        ids = list(session.scalars(_INSERT_MANY, rows))
    if ids != sorted(ids):
        raise RuntimeError(f"the database numbered audit entries out of their order ({ids}); nothing was written")
    return [AuditEntry(id=entry_id, **row) for entry_id, row in zip(ids, rows, strict=True)]


_INSERT = insert(table_of(AuditEntry)).returning(table_of(AuditEntry).c.id)
_INSERT_MANY = insert(table_of(AuditEntry)).returning(table_of(AuditEntry).c.id, sort_by_parameter_order=True)
"""Several rows in one statement (SQLAlchemy's "insertmanyvalues"), ids returned in the rows' order."""


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
