"""Bounded monitoring queries for the operator dashboard and the metrics scrape.

:mod:`gateway.reports` defines what "in flight", "overdue" and "failed" mean and returns every
matching row; that suits exports but not a page an operator reloads while thousands of agencies
exchange documents. The queries here keep those exact definitions (they start from the same
query where one exists, and tests compare them with ``gateway.reports``) and add what a page
needs: a LIMIT, the total that tells how many rows were left off, and the names to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from gateway import reports
from gateway.federation import outbox
from gateway.federation.outbox import HopStats
from gateway.store.models import Agency, Delivery, Document, OutboxConsignment, Recipient

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

AGENCIES_PER_LEVEL = 200
DOCUMENTS_IN_FLIGHT = 50
RECIPIENTS_PER_DOCUMENT = 25
OVERDUE_ROWS = 100
FAILED_ROWS = 100
QUEUE_ROWS = 50
FAILED_MAX_ATTEMPTS = 3
"""Same default as :func:`gateway.reports.failed_deliveries`: leased more often than this is stuck."""


@dataclass(frozen=True)
class Bounded(Generic[T_co]):
    """The first rows of a longer list, and how long the whole list is (read-only, so covariant)."""

    items: tuple[T_co, ...]
    total: int

    @property
    def more(self) -> int:
        """How many rows were left off."""
        return self.total - len(self.items)


@dataclass(frozen=True)
class Limits:
    """Row caps for one overview; tests shrink them to prove the "N more" lines."""

    agencies_per_level: int = AGENCIES_PER_LEVEL
    documents: int = DOCUMENTS_IN_FLIGHT
    recipients_per_document: int = RECIPIENTS_PER_DOCUMENT
    overdue: int = OVERDUE_ROWS
    failed: int = FAILED_ROWS
    queues: int = QUEUE_ROWS


# -- grades ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelGrades:
    """One agency level: how many agencies reached each grade, and the first agencies by code."""

    level: int
    counts: dict[str, int]
    agencies: Bounded[reports.AgencyGrade]


def level_grades(session: Session, now: datetime, per_level: int = AGENCIES_PER_LEVEL) -> list[LevelGrades]:
    """Grades per level as :func:`gateway.reports.connection_grades` judges them at ``now``.

    Judging a grade needs every agency's activity, so the aggregate queries read the whole
    directory (a few thousand small rows); only the listing is cut to ``per_level`` rows.
    """
    grades = reports.connection_grades(session, as_of=now)
    counts = reports.grade_counts(grades)
    by_level: dict[int, list[reports.AgencyGrade]] = {}
    for grade in grades:
        by_level.setdefault(grade.level, []).append(grade)
    return [
        LevelGrades(level, counts[level], Bounded(tuple(members[:per_level]), len(members)))
        for level, members in sorted(by_level.items())
    ]


# -- documents in flight ------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipientRow:
    """One addressee of an in-flight document: its processing status and its queue item."""

    code: str
    name: str
    status: str | None
    status_at: datetime | None
    recall_state: str | None
    delivery_state: str | None
    attempts: int
    fetched_at: datetime | None
    acked_at: datetime | None

    @property
    def finished(self) -> bool:
        """Completed (06) or rejected (02): this copy no longer keeps the document in flight."""
        return self.status in reports.FINAL_CODES


@dataclass(frozen=True)
class FlightDocument:
    """A document at least one recipient has not finished, with every recipient's state."""

    document_id: str
    code: str
    subject: str
    sender_code: str
    sender_name: str
    sent_at: datetime
    due_date: date | None
    recipients: Bounded[RecipientRow]


@dataclass(frozen=True)
class InFlight:
    """The oldest in-flight documents, and totals over all of them."""

    documents: Bounded[FlightDocument]
    copies: int
    """Recipient copies still in flight (the length of :func:`gateway.reports.documents_in_flight`)."""


def _flight_copies() -> Any:
    """(document id, sent at, recipient id) of every in-flight copy, as gateway.reports defines it."""
    return (
        reports.copies_query()
        .order_by(None)
        .with_only_columns(
            Document.id.label("document_id"), Document.created_at.label("sent_at"), Recipient.id.label("recipient_id")
        )
        .subquery()
    )


def in_flight_counts(session: Session) -> tuple[int, int]:
    """(copies, documents) in flight: the length of gateway.reports.documents_in_flight, and its documents."""
    copies = _flight_copies()
    copy_count, document_count = session.execute(
        select(func.count(), func.count(func.distinct(copies.c.document_id)))
    ).one()
    return int(copy_count), int(document_count)


def documents_in_flight(
    session: Session, limit: int = DOCUMENTS_IN_FLIGHT, per_document: int = RECIPIENTS_PER_DOCUMENT
) -> InFlight:
    """The ``limit`` oldest documents still in flight, each with its first ``per_document`` recipients."""
    copies = _flight_copies()
    copy_count, document_count = in_flight_counts(session)
    first_sent = func.min(copies.c.sent_at)
    ids = list(
        session.scalars(
            select(copies.c.document_id)
            .group_by(copies.c.document_id)
            .order_by(first_sent, copies.c.document_id)
            .limit(limit)
        )
    )
    sender = aliased(Agency)
    documents = {
        document.id: (document, code, name)
        for document, code, name in session.execute(
            select(Document, sender.code, sender.name)
            .join(sender, sender.id == Document.sender_id)
            .where(Document.id.in_(ids))
        )
    }
    recipients = _recipient_rows(session, ids, per_document)
    pages = []
    for document_id in ids:
        document, sender_code, sender_name = documents[document_id]
        rows, total = recipients.get(document_id, ([], 0))
        pages.append(
            FlightDocument(
                document_id=document.id,
                code=f"{document.code_number}/{document.code_notation}",
                subject=document.subject,
                sender_code=sender_code,
                sender_name=sender_name,
                sent_at=document.created_at,
                due_date=document.due_date,
                recipients=Bounded(tuple(rows), total),
            )
        )
    return InFlight(Bounded(tuple(pages), document_count), copy_count)


def _recipient_rows(
    session: Session, document_ids: Sequence[str], per_document: int
) -> dict[str, tuple[list[RecipientRow], int]]:
    """The first ``per_document`` recipients of each document (a window, so one query for all)."""
    if not document_ids:
        return {}
    rank = func.row_number().over(partition_by=Recipient.document_id, order_by=Recipient.id).label("rank")
    ranked = select(Recipient.id.label("recipient_id"), rank).where(Recipient.document_id.in_(document_ids)).subquery()
    query = (
        select(Recipient, Agency.code, Agency.name, Delivery)
        .join(ranked, ranked.c.recipient_id == Recipient.id)
        .join(Agency, Agency.id == Recipient.agency_id)
        .outerjoin(
            Delivery,
            and_(
                Delivery.document_id == Recipient.document_id,
                Delivery.agency_id == Recipient.agency_id,
                Delivery.kind == "document",
            ),
        )
        .where(ranked.c.rank <= per_document)
        .order_by(Recipient.document_id, Recipient.id)
    )
    totals = dict(
        session.execute(
            select(Recipient.document_id, func.count())
            .where(Recipient.document_id.in_(document_ids))
            .group_by(Recipient.document_id)
        ).all()
    )
    found: dict[str, tuple[list[RecipientRow], int]] = {}
    for recipient, code, name, outer_delivery in session.execute(query):
        delivery: Delivery | None = outer_delivery  # outer join: a recipient may have no delivery row
        rows, _ = found.setdefault(recipient.document_id, ([], totals[recipient.document_id]))
        rows.append(
            RecipientRow(
                code=code,
                name=name,
                status=recipient.status,
                status_at=recipient.status_at,
                recall_state=recipient.recall_state,
                delivery_state=delivery.state if delivery else None,
                attempts=delivery.attempts if delivery else 0,
                fetched_at=delivery.fetched_at if delivery else None,
                acked_at=delivery.acked_at if delivery else None,
            )
        )
    return found


# -- overdue ------------------------------------------------------------------------------------


def overdue_documents(
    session: Session, now: datetime, ack_overdue_hours: int, limit: int = OVERDUE_ROWS
) -> Bounded[reports.OverdueCopy]:
    """The first ``limit`` copies :func:`gateway.reports.overdue_documents` reports, and their number.

    The filter runs in SQL (past DueDate in Vietnam time, or a document item still pending since
    the cutoff) instead of over every in-flight copy in Python.
    """
    today = now.astimezone(reports.VIETNAM_TIME).date()
    cutoff = now - timedelta(hours=ack_overdue_hours)
    since = (
        select(func.min(Delivery.created_at))
        .where(
            Delivery.document_id == Document.id,
            Delivery.agency_id == Recipient.agency_id,
            Delivery.kind == "document",
            Delivery.state == "pending",
            Delivery.created_at <= cutoff,
        )
        .correlate(Document, Recipient)
        .scalar_subquery()
    )
    query = reports.copies_query().where(or_(Document.due_date < today, since.is_not(None)))
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    if limit <= 0:
        return Bounded((), total)
    rows = session.execute(query.add_columns(since.label("since")).limit(limit))
    items = []
    for document, recipient, sender_code, recipient_code, unacknowledged_since in rows:
        base = reports.copy_state(document, recipient, sender_code, recipient_code)
        past_due = document.due_date is not None and document.due_date < today
        items.append(
            reports.OverdueCopy(
                **{f: getattr(base, f) for f in base.__dataclass_fields__},
                past_due=past_due,
                unacknowledged_since=unacknowledged_since,
            )
        )
    return Bounded(tuple(items), total)


# -- failed deliveries --------------------------------------------------------------------------


def failed_deliveries(
    session: Session, limit: int = FAILED_ROWS, max_attempts: int = FAILED_MAX_ATTEMPTS
) -> Bounded[reports.FailedDelivery]:
    """The first ``limit`` items :func:`gateway.reports.failed_deliveries` reports, and their number."""
    condition = reports.failed_condition(max_attempts)
    total = session.scalar(select(func.count()).select_from(Delivery).where(condition)) or 0
    if limit <= 0:
        return Bounded((), total)
    query = reports.failed_deliveries_query(max_attempts).limit(limit)
    items = tuple(reports.failed_delivery(row) for row in session.execute(query))
    return Bounded(items, total)


# -- queues -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    """One agency's pending items (documents to fetch and status messages), leased or not."""

    code: str
    name: str
    pending: int
    leased: int
    oldest: datetime


@dataclass(frozen=True)
class Queues:
    """The deepest queues, plus the totals over every agency."""

    deepest: Bounded[QueueDepth]
    pending: int
    """All pending items, leased or not."""


def queue_depths(session: Session, now: datetime, limit: int = QUEUE_ROWS) -> Queues:
    """The ``limit`` agencies with the most pending items, deepest first, and the totals."""
    pending = Delivery.state == "pending"
    agencies, items = session.execute(
        select(func.count(func.distinct(Delivery.agency_id)), func.count()).where(pending)
    ).one()
    depth = func.count().label("depth")
    leased = func.sum(case((and_(Delivery.lease_until.is_not(None), Delivery.lease_until > now), 1), else_=0))
    rows = session.execute(
        select(Agency.code, Agency.name, depth, leased, func.min(Delivery.created_at))
        .join(Agency, Agency.id == Delivery.agency_id)
        .where(pending)
        .group_by(Agency.id, Agency.code, Agency.name)
        .order_by(depth.desc(), Agency.code)
        .limit(limit)
    )
    deepest = tuple(
        QueueDepth(code, name, count, int(leased_count or 0), oldest)
        for code, name, count, leased_count, oldest in rows
    )
    return Queues(Bounded(deepest, agencies), items)


# -- copies by status ---------------------------------------------------------------------------


def copies_by_status(session: Session) -> dict[str | None, int]:
    """Recipient copies per current processing status (None: not fetched yet), recalled included."""
    rows = session.execute(select(Recipient.status, func.count()).group_by(Recipient.status))
    return {status: count for status, count in rows}


# -- the whole page -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    """Everything the dashboard shows, read in one transaction so the numbers agree."""

    now: datetime
    ack_overdue_hours: int
    levels: list[LevelGrades]
    in_flight: InFlight
    overdue: Bounded[reports.OverdueCopy]
    failed: Bounded[reports.FailedDelivery]
    queues: Queues
    statuses: dict[str | None, int]
    names: dict[str, str] = field(default_factory=dict)
    """Agency names for the codes the overdue and failed tables show."""
    relay: RelayOverview | None = None
    """The relay outbox and the agencies served by other instances (docs/federation.md)."""
    sandboxes: frozenset[str] = frozenset()
    """Codes of the sandbox agencies of certification runs: test agencies, marked wherever they appear."""


@dataclass(frozen=True)
class RelayOverview:
    """Relay outbox per next hop, the failed consignments, and how many agencies each instance serves."""

    hops: list[HopStats]
    failed: list[OutboxConsignment]
    homes: dict[str, int]


def relay_overview(session: Session, now: datetime, failed_limit: int = 20) -> RelayOverview:
    home = func.coalesce(Agency.home_instance, "(here)")
    homes = {str(h): int(n) for h, n in session.execute(select(home, func.count()).group_by(home))}
    return RelayOverview(outbox.stats(session, now), outbox.failed_rows(session, failed_limit), homes)


def overview(session: Session, now: datetime, ack_overdue_hours: int, limits: Limits | None = None) -> Overview:
    """Read every dashboard section at ``now``."""
    limits = limits or Limits()
    overdue = overdue_documents(session, now, ack_overdue_hours, limits.overdue)
    failed = failed_deliveries(session, limits.failed)
    codes = {c.recipient_code for c in overdue.items} | {c.sender_code for c in overdue.items}
    codes |= {f.agency_code for f in failed.items}
    names = dict(session.execute(select(Agency.code, Agency.name).where(Agency.code.in_(codes))).all()) if codes else {}
    return Overview(
        now=now,
        ack_overdue_hours=ack_overdue_hours,
        levels=level_grades(session, now, limits.agencies_per_level),
        in_flight=documents_in_flight(session, limits.documents, limits.recipients_per_document),
        overdue=overdue,
        failed=failed,
        queues=queue_depths(session, now, limits.queues),
        statuses=copies_by_status(session),
        names=names,
        relay=relay_overview(session, now),
        sandboxes=frozenset(session.scalars(select(Agency.code).where(Agency.sandbox.is_(True)))),
    )
