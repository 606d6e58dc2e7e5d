"""The relay outbox: consignments waiting for a next hop, and what happened to each.

Every function takes the caller's session and never commits. Custody rules (docs/federation.md):
a row leaves ``waiting`` for ``sending`` while a push is in flight or a pull leased it, becomes
``delivered`` only when the next hop answered (push) or acknowledged (pull), and ``failed`` after
``relay_max_attempts``, which produces a delivery report at the sender's instance. A recall takes
recipients out of a document consignment that never left (:func:`withdraw_unsent`); one left with
no recipient is ``withdrawn``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.federation.model import KIND_DOCUMENT, KINDS, ConsignmentHeader
from gateway.store import audit
from gateway.store.models import OutboxConsignment

WAITING = "waiting"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
WITHDRAWN = "withdrawn"
MAX_BACKOFF_SECONDS = 3600.0
RELAY_ACTOR = "relay"


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Wait before attempt ``attempts + 1``: backoff * 2**(attempts-1), capped at an hour."""
    seconds = settings.relay_backoff_seconds * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, MAX_BACKOFF_SECONDS))


def add(
    session: Session,
    settings: Settings,
    *,
    next_hop: str,
    kind: str,
    document_id: str | None,
    origin_instance: str,
    origin_document_id: str,
    sender_code: str,
    recipients: Sequence[str],
    sha256: str,
    size: int,
    path_so_far: Sequence[str],
    now: datetime,
    status: dict[str, object] | None = None,
) -> str:
    """Queue a new consignment for ``next_hop`` (its own new id); returns the id.

    ``path_so_far`` is the path the consignment arrived with (empty at its origin): this instance
    is appended, and the hop count is the length of the result.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown consignment kind {kind!r}")
    path = [*path_so_far, settings.instance_id]
    consignment_id = str(uuid.uuid4())
    row = OutboxConsignment(
        id=consignment_id,
        next_hop=next_hop,
        kind=kind,
        document_id=document_id,
        origin_instance=origin_instance,
        origin_document_id=origin_document_id,
        sender_code=sender_code,
        recipients=json.dumps(list(recipients)),
        blob_sha256=sha256,
        payload_size=size,
        hop_count=len(path),
        path=json.dumps(path),
        state=WAITING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        **(status or {}),
    )
    session.add(row)
    audit.append(
        session,
        RELAY_ACTOR,
        "relay_out",
        document_id,
        {
            "consignment": consignment_id,
            "kind": kind,
            "next_hop": next_hop,
            "recipients": list(recipients),
            "origin": [origin_instance, origin_document_id],
            "sha256": sha256,
        },
        now,
    )
    return consignment_id


def withdraw_unsent(session: Session, document_id: str, codes: Collection[str], now: datetime) -> set[str]:
    """Take ``codes`` out of the document consignments of ``document_id`` that never left; return those taken.

    Never left means waiting, never pushed or leased (``attempts`` 0) and never failed (a requeued
    row keeps its ``last_error``): no next hop can hold a copy, so no recall needs to follow it.
    The rows are locked, so a relay cannot start a push of the old recipient list meanwhile.
    """
    if not codes:
        return set()
    rows = session.scalars(
        select(OutboxConsignment)
        .where(
            OutboxConsignment.document_id == document_id,
            OutboxConsignment.kind == KIND_DOCUMENT,
            OutboxConsignment.state == WAITING,
            OutboxConsignment.attempts == 0,
            OutboxConsignment.last_error.is_(None),
        )
        .order_by(OutboxConsignment.id)
        .with_for_update()
    )
    taken: set[str] = set()
    for row in rows:
        carried = json.loads(row.recipients)
        out = [code for code in carried if code in codes]
        if not out:
            continue
        kept = [code for code in carried if code not in codes]
        row.recipients = json.dumps(kept)
        if not kept:
            row.state = WITHDRAWN
        taken.update(out)
        audit.append(
            session,
            RELAY_ACTOR,
            "relay_withdrawn",
            document_id,
            {"consignment": row.id, "next_hop": row.next_hop, "recipients": out, "left": kept},
            now,
        )
    return taken


def header(row: OutboxConsignment) -> ConsignmentHeader:
    """The wire header of a stored consignment."""
    return ConsignmentHeader(
        consignment_id=row.id,
        kind=row.kind,
        origin_instance=row.origin_instance,
        origin_document_id=row.origin_document_id,
        sender_code=row.sender_code,
        recipients=tuple(json.loads(row.recipients)),
        payload_sha256=row.blob_sha256,
        payload_size=row.payload_size,
        hop_count=row.hop_count,
        path=tuple(json.loads(row.path)),
        status_code=row.status_code,
        recipient_code=row.recipient_code,
        reporter_code=row.reporter_code,
        reported_at=row.reported_at,
        description=row.description,
        staff_department=row.staff_department,
        staff_name=row.staff_name,
    )


def due_for_push(session: Session, next_hop: str, now: datetime, limit: int) -> list[OutboxConsignment]:
    """Waiting consignments for ``next_hop`` whose next attempt is due, oldest first."""
    query = (
        select(OutboxConsignment)
        .where(
            OutboxConsignment.next_hop == next_hop,
            OutboxConsignment.state == WAITING,
            OutboxConsignment.next_attempt_at <= now,
        )
        .order_by(OutboxConsignment.created_at, OutboxConsignment.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def start_push(row: OutboxConsignment, now: datetime, lease_seconds: float) -> None:
    """Mark a push in flight; a relay killed mid-push leaves it to :func:`recover_pushes`."""
    row.state = SENDING
    row.attempts += 1
    row.lease_until = now + timedelta(seconds=lease_seconds)


def recover_pushes(session: Session, next_hop: str) -> int:
    """Put pushes interrupted by a crash back in line (same id: the next hop deduplicates).

    Only the singleton relay pushes, so a ``sending`` push row at its start belongs to a dead relay.
    """
    result = session.execute(
        update(OutboxConsignment)
        .where(OutboxConsignment.next_hop == next_hop, OutboxConsignment.state == SENDING)
        .values(state=WAITING, lease_until=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def lease_for_peer(
    session: Session, settings: Settings, peer: str, limit: int, lease_seconds: int, now: datetime
) -> list[OutboxConsignment]:
    """Lease up to ``limit`` consignments routed to ``peer`` for its pull (waiting, or lease expired).

    A consignment leased ``relay_max_attempts`` times and never acknowledged fails instead.
    """
    query = (
        select(OutboxConsignment)
        .where(
            OutboxConsignment.next_hop == peer,
            or_(
                OutboxConsignment.state == WAITING,
                (OutboxConsignment.state == SENDING) & (OutboxConsignment.lease_until <= now),
            ),
        )
        .order_by(OutboxConsignment.created_at, OutboxConsignment.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    leased = []
    for row in session.scalars(query):
        if row.attempts >= settings.relay_max_attempts:
            fail(session, row, f"leased {row.attempts} times by {peer} and never acknowledged", now, settings)
            continue
        row.state = SENDING
        row.attempts += 1
        row.lease_until = now + timedelta(seconds=lease_seconds)
        leased.append(row)
    session.flush()
    return leased


def for_peer(session: Session, peer: str, consignment_id: str) -> OutboxConsignment | None:
    """The consignment if it is routed to ``peer``; None otherwise (another peer's ids never leak)."""
    return session.scalar(
        select(OutboxConsignment).where(OutboxConsignment.id == consignment_id, OutboxConsignment.next_hop == peer)
    )


def delivered(session: Session, row: OutboxConsignment, now: datetime, duplicate: bool = False) -> None:
    """Custody moved to the next hop; idempotent."""
    if row.state == DELIVERED:
        return
    row.state = DELIVERED
    row.delivered_at = now
    row.lease_until = None
    row.last_error = None
    audit.append(
        session,
        RELAY_ACTOR,
        "relay_delivered",
        row.document_id,
        {"consignment": row.id, "next_hop": row.next_hop, "duplicate": duplicate},
        now,
    )


def retry_later(session: Session, settings: Settings, row: OutboxConsignment, error: str, now: datetime) -> bool:
    """Record a failed attempt; schedules the next one, or fails the row after the last. True if failed."""
    row.last_error = error[:2000]
    row.lease_until = None
    if row.attempts >= settings.relay_max_attempts:
        fail(session, row, error, now, settings)
        return True
    row.state = WAITING
    row.next_attempt_at = now + backoff(settings, row.attempts)
    return False


def fail(session: Session, row: OutboxConsignment, error: str, now: datetime, settings: Settings) -> None:
    """Give up on a consignment; the sender learns it through a delivery report (reports.py)."""
    from gateway.federation.reports import report_failure

    row.state = FAILED
    row.last_error = error[:2000]
    row.lease_until = None
    audit.append(
        session,
        RELAY_ACTOR,
        "relay_failed",
        row.document_id,
        {"consignment": row.id, "next_hop": row.next_hop, "attempts": row.attempts, "error": error[:500]},
        now,
    )
    report_failure(session, settings, row, now)


def requeue(session: Session, consignment_id: str, now: datetime, actor: str = "operator") -> OutboxConsignment | None:
    """Put a failed consignment back in line with its attempts reset (audited); None if not failed."""
    row = session.get(OutboxConsignment, consignment_id, with_for_update=True)
    if row is None or row.state != FAILED:
        return None
    row.state = WAITING
    row.attempts = 0
    row.next_attempt_at = now
    row.lease_until = None
    audit.append(
        session,
        actor,
        "relay_requeue",
        row.document_id,
        {"consignment": row.id, "next_hop": row.next_hop, "last_error": row.last_error},
        now,
    )
    return row


@dataclass(frozen=True)
class HopStats:
    """Monitoring figures of one next hop."""

    next_hop: str
    waiting: int
    sending: int
    failed: int
    delivered: int
    oldest_waiting_seconds: float


def stats(session: Session, now: datetime) -> list[HopStats]:
    """Queue depth, oldest undelivered age and failures per next hop."""
    rows = session.execute(
        select(
            OutboxConsignment.next_hop, OutboxConsignment.state, func.count(), func.min(OutboxConsignment.created_at)
        ).group_by(OutboxConsignment.next_hop, OutboxConsignment.state)
    ).all()
    hops: dict[str, dict[str, int]] = {}
    oldest_by_hop: dict[str, datetime] = {}
    for hop, state, count, oldest in rows:
        entry = hops.setdefault(hop, {})
        entry[state] = count
        if state in (WAITING, SENDING) and oldest is not None:
            current = oldest_by_hop.get(hop)
            if current is None or oldest < current:
                oldest_by_hop[hop] = oldest
    result = []
    for hop in sorted(hops):
        entry = hops[hop]
        first = oldest_by_hop.get(hop)
        age = (now - first).total_seconds() if first is not None else 0.0
        result.append(
            HopStats(
                hop,
                int(entry.get(WAITING, 0)),
                int(entry.get(SENDING, 0)),
                int(entry.get(FAILED, 0)),
                int(entry.get(DELIVERED, 0)),
                max(age, 0.0),
            )
        )
    return result


def failed_rows(session: Session, limit: int = 200) -> list[OutboxConsignment]:
    """Failed consignments, newest first."""
    query = (
        select(OutboxConsignment)
        .where(OutboxConsignment.state == FAILED)
        .order_by(OutboxConsignment.created_at.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
