"""The pull queue: each agency lists, fetches and acknowledges its ``Delivery`` rows.

A poll cannot hold a row lock across HTTP requests, so listing *leases* items instead: a leased
item is hidden from other polls until ``lease_until``, and comes back if it is not acknowledged by
then (at-least-once delivery). Mutual exclusion while leasing comes from
``FOR UPDATE SKIP LOCKED`` on PostgreSQL (concurrent polls take disjoint rows without waiting) and
from the database-wide write lock of ``BEGIN IMMEDIATE`` on SQLite (see ``database.py``).

Every function takes the caller's session and never commits: the caller's transaction decides.
:func:`fetch_item` also takes the :class:`Database`, to send its statements in one pipeline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Exists,
    Select,
    Update,
    and_,
    bindparam,
    case,
    exists,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import QueryableAttribute, Session

from gateway.store.database import Database
from gateway.store.models import Delivery, UTCDateTime, table_of

_TIME = UTCDateTime()

KIND_DOCUMENT = "document"
KIND_STATUS = "status"
KINDS = frozenset({KIND_DOCUMENT, KIND_STATUS})

PENDING = "pending"
ACKED = "acked"
WITHDRAWN = "withdrawn"


def _require_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: pass a timezone-aware UTC time")
    return now.astimezone(UTC)


def enqueue(
    session: Session,
    agency_id: int,
    kind: str,
    document_id: str,
    status_event_id: int | None = None,
    now: datetime | None = None,
) -> Delivery:
    """Add an item to ``agency_id``'s queue: a document to fetch, or a status message about one."""
    if kind not in KINDS:
        raise ValueError(f"unknown delivery kind {kind!r}; expected one of {sorted(KINDS)}")
    if kind == KIND_STATUS and status_event_id is None:
        raise ValueError("a status delivery must name its status event")
    delivery = Delivery(
        id=str(uuid.uuid4()),
        agency_id=agency_id,
        kind=kind,
        document_id=document_id,
        status_event_id=status_event_id,
        state=PENDING,
        lease_until=None,
        attempts=0,
        created_at=_require_aware(now) if now is not None else datetime.now(UTC),
    )
    session.add(delivery)
    return delivery


def enqueue_many(session: Session, agency_ids: Sequence[int], kind: str, document_id: str, now: datetime) -> None:
    """Queue the same item for several agencies in one statement (a document's fan-out to its recipients)."""
    session.execute(INSERT_ITEMS, item_rows(agency_ids, kind, document_id, now))


INSERT_ITEMS = insert(table_of(Delivery))
"""The INSERT of :func:`item_rows` (for ``Database.pipeline`` as well as :func:`enqueue_many`)."""


def item_rows(agency_ids: Sequence[int], kind: str, document_id: str, now: datetime) -> list[dict[str, Any]]:
    """The rows that queue the same document item for several agencies, each with its own id."""
    if kind not in KINDS or kind == KIND_STATUS:
        raise ValueError(f"enqueue_many queues documents, not {kind!r} items")
    created = _require_aware(now)
    return [
        {
            "id": str(uuid.uuid4()),
            "agency_id": agency_id,
            "kind": kind,
            "document_id": document_id,
            "state": PENDING,
            "attempts": 0,
            "created_at": created,
        }
        for agency_id in agency_ids
    ]


def status_item_row(agency_id: int, document_id: str, status_event_id: int, now: datetime) -> dict[str, Any]:
    """The row that queues a status message for one agency (:data:`INSERT_ITEMS`), with its own id."""
    return {
        "id": str(uuid.uuid4()),
        "agency_id": agency_id,
        "kind": KIND_STATUS,
        "document_id": document_id,
        "status_event_id": status_event_id,
        "state": PENDING,
        "attempts": 0,
        "created_at": _require_aware(now),
    }


def _available(
    agency_id: int | BindParameter[int] | QueryableAttribute[int], now: datetime | BindParameter[datetime]
) -> tuple[ColumnElement[bool], ...]:
    """Pending and not under a live lease: what a poll may hand out (served by ``ix_deliveries_queue``).

    Values, or bound parameters for a statement built once.
    """
    return (
        Delivery.agency_id == agency_id,
        Delivery.state == PENDING,
        or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now),
    )


def any_available(agency_id: QueryableAttribute[int], now: BindParameter[datetime]) -> Exists:
    """EXISTS of an item a poll could lease, for another statement to carry (authentication does:
    one round trip then answers both "who is it" and "is anything waiting")."""
    return exists().where(*_available(agency_id, now))


def held_by(agency_id: int | BindParameter[int]) -> ColumnElement[bool]:
    """The item is ``agency_id``'s: the ownership check of a statement that names its items by id.

    Written ``agency_id + 0`` so that it cannot be served by ``ix_deliveries_queue`` (whose first
    column is ``agency_id``) and the named rows are found by primary key, whatever the queue's depth.
    Without statistics on the table (SQLite gathers none by itself; PostgreSQL has none until
    ANALYZE, which autovacuum runs only when it is on) both planners chose the queue index and read
    every pending item of the agency to find the few named (docs/storage.md §2).
    """
    return Delivery.agency_id + literal_column("0") == agency_id


_ANY_AVAILABLE = select(Delivery.id).where(*_available(bindparam("agency_id"), bindparam("now", type_=_TIME))).limit(1)
""":func:`_available` with bound parameters, built once: every poll runs it."""


def has_available(connection: Connection | Session, agency_id: int, now: datetime) -> bool:
    """Whether the agency has any item a poll could lease, read without locking anything.

    Most polls find nothing; asking first, outside any write transaction (:meth:`Database.reading`),
    spares them the write lock (``BEGIN IMMEDIATE`` on SQLite, row locks on PostgreSQL) that leasing takes.
    """
    now = _require_aware(now)
    return connection.execute(_ANY_AVAILABLE, {"agency_id": agency_id, "now": now}).first() is not None


def lease_pending(session: Session, agency_id: int, limit: int, lease_seconds: int, now: datetime) -> list[Delivery]:
    """Lease up to ``limit`` of the agency's oldest available items for ``lease_seconds``.

    Available means pending and not under a live lease (``lease_until`` null or ``<= now``). Each
    returned item gets ``lease_until = now + lease_seconds`` and ``attempts + 1``; no concurrent
    caller receives it until that lease expires. One statement whatever ``limit`` is: an UPDATE of
    the rows a ``FOR UPDATE SKIP LOCKED`` subquery picked, RETURNING them; the result is oldest first.
    """
    if limit <= 0:
        return []
    now = _require_aware(now)
    chosen = (
        select(Delivery.id)
        .where(*_available(agency_id, now))
        # The order ix_deliveries_queue keeps, so the scan stops after ``limit`` rows: ordering by
        # ``id`` too sorted every pending item first (docs/storage.md §2).
        .order_by(Delivery.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    until = now + timedelta(seconds=lease_seconds)
    leased = session.scalars(
        update(Delivery)
        .where(Delivery.id.in_(chosen.scalar_subquery()))
        .values(lease_until=until, attempts=Delivery.attempts + 1)
        .returning(Delivery)
        # The lease columns must reflect the row as updated, not a stale identity-map copy.
        .execution_options(populate_existing=True, synchronize_session=False)
    ).all()
    return sorted(leased, key=lambda d: (d.created_at, d.id))


@dataclass(frozen=True)
class Item:
    """A queue item as the receiving calls see it, read in the statement that changed it."""

    id: str
    kind: str
    document_id: str
    status_event_id: int | None
    state: str


_TABLE = table_of(Delivery)
_ITEM_COLUMNS = (_TABLE.c.id, _TABLE.c.kind, _TABLE.c.document_id, _TABLE.c.status_event_id, _TABLE.c.state)


_FETCH_ITEM = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("item_id"), held_by(bindparam("holder")))
    .values(
        fetched_at=case(
            (
                and_(_TABLE.c.fetched_at.is_(None), _TABLE.c.state != WITHDRAWN),
                bindparam("fetched_now", type_=_TIME),
            ),
            else_=_TABLE.c.fetched_at,
        )
    )
    .returning(*_ITEM_COLUMNS)
)
""":func:`fetch_item`'s statement, built once: every getDocument runs it (building and keying it cost
about as much CPU as running it)."""


def fetch_item(
    db: Database,
    session: Session,
    item_id: str,
    agency_id: int,
    now: datetime,
    along: Sequence[tuple[Update | Select[Any], Mapping[str, Any]]] = (),
) -> tuple[Item | None, list[list[tuple[Any, ...]]]]:
    """Record the first download of one of the agency's items (later fetches keep that time).

    Returns the item (None if the agency has no such item) and the rows of the ``along``
    statements, which run after it in the same round trip (:meth:`Database.pipeline`: on PostgreSQL
    the transaction's BEGIN goes too when this is its first statement). The caller decides from the
    item whether their effects may stand; if not, it raises and the transaction rolls back.

    One UPDATE ... RETURNING: it locks the row (PostgreSQL) and reads its committed state in the
    same round trip, so a concurrent :func:`withdraw` that committed first shows as ``withdrawn``
    (and a withdrawn item never gets a ``fetched_at``).
    """
    params = {"item_id": item_id, "holder": agency_id, "fetched_now": _require_aware(now)}
    rows, *others = db.pipeline(session, then=[(_FETCH_ITEM, params), *along])
    return (Item(*rows[0]) if rows else None), others


def acknowledge_items(session: Session, item_ids: Sequence[str], agency_id: int, now: datetime) -> list[Item]:
    """Acknowledge the agency's pending items among ``item_ids`` in one statement; return those it changed.

    Items already acknowledged keep their first ``acked_at``; withdrawn items and other agencies'
    items are left alone (the caller tells them apart with :func:`states`).
    """
    now = _require_aware(now)
    if not item_ids:
        return []
    rows = session.execute(
        update(_TABLE)
        .where(_TABLE.c.id.in_(list(item_ids)), held_by(agency_id), _TABLE.c.state == PENDING)
        .values(state=ACKED, acked_at=now, lease_until=None)
        .returning(*_ITEM_COLUMNS)
    )
    return [Item(*row) for row in rows]


def states(session: Session, item_ids: Sequence[str], agency_id: int) -> dict[str, str]:
    """The state of each of the agency's items among ``item_ids`` (other agencies' items are absent)."""
    rows = session.execute(
        select(Delivery.id, Delivery.state).where(Delivery.id.in_(list(item_ids)), held_by(agency_id))
    )
    return {item_id: state for item_id, state in rows}


def withdraw(session: Session, document_id: str, agency_ids: Iterable[int], now: datetime) -> list[Delivery]:
    """Take back a document from the given recipients' queues, where it was never fetched.

    Only pending document items with no ``fetched_at`` are withdrawn; the rest are left alone (the
    recipient already has the document). Returns the withdrawn items.
    """
    _require_aware(now)
    agencies = list(agency_ids)
    if not agencies:
        return []
    query = (
        select(Delivery)
        .where(
            Delivery.document_id == document_id,
            Delivery.agency_id.in_(agencies),
            Delivery.kind == KIND_DOCUMENT,
            Delivery.state == PENDING,
            Delivery.fetched_at.is_(None),
        )
        .order_by(Delivery.created_at, Delivery.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    items = list(session.scalars(query))
    for item in items:
        item.state = WITHDRAWN
        item.lease_until = None
    session.flush()
    return items
