"""Monitoring reports over the store: who is connected, who exchanges, what is late or stuck.

The interconnection report reproduces what the 2016 tests measured per level of agency
(mission.md): connected, sends, receives, reports processing status, plus status volumes.
Everything here is a read-only query returning dataclasses, so the CLI, the operator dashboard
and exports all count the same way. Times are timezone-aware UTC; dates a person types are
Vietnam dates (UTC+7), the day the agencies work in.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, TextIO

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from gateway import csvout
from gateway.exchange.workflow import STATUS_NAMES
from gateway.store.models import Agency, Credential, Delivery, Document, Recipient, StatusEvent

VIETNAM_TIME = timezone(timedelta(hours=7), "ICT")
REPORTED_STATUS_CODES = ("02", "03", "04", "05", "06")
"""Codes only a recipient's people report (01 is recorded by the gateway on fetch)."""
FINAL_CODES = ("02", "06")
LEVEL_NAMES = {1: "ministry / province", 2: "department / district", 3: "commune / centre", 4: "sub-unit"}

NOT_CONNECTED = "not connected"
CONNECTED = "connected"
SENDS_AND_RECEIVES = "sends and receives"
REPORTS_STATUS = "sends, receives and reports status"
GRADES = (NOT_CONNECTED, CONNECTED, SENDS_AND_RECEIVES, REPORTS_STATUS)


def day_start(day: date) -> datetime:
    """The UTC instant a Vietnam calendar day begins."""
    return datetime.combine(day, time(), VIETNAM_TIME).astimezone(UTC)


def period_for_days(first: date, last: date) -> tuple[datetime, datetime]:
    """The half-open UTC period covering Vietnam days ``first`` through ``last`` inclusive."""
    return day_start(first), day_start(last + timedelta(days=1))


def _in(column: Any, start: datetime, end: datetime) -> Any:
    return and_(column >= start, column < end)


def _live_credential_agencies(session: Session, at: datetime) -> set[int]:
    query = (
        select(Credential.agency_id)
        .distinct()
        .where(
            Credential.created_at <= at,
            or_(Credential.revoked_at.is_(None), Credential.revoked_at > at),
            or_(Credential.expires_at.is_(None), Credential.expires_at > at),
        )
    )
    return set(session.scalars(query))


def connected_agencies(session: Session, at: datetime) -> set[int]:
    """Ids of active agencies holding a credential that authenticates at ``at``."""
    active = set(session.scalars(select(Agency.id).where(Agency.active.is_(True))))
    return active & _live_credential_agencies(session, at)


def _sandbox_documents() -> Any:
    """Documents the sandbox agency of certification runs sent or received: test traffic, never counted."""
    sandbox = select(Agency.id).where(Agency.sandbox.is_(True))
    return select(Document.id).where(
        or_(
            Document.sender_id.in_(sandbox),
            Document.id.in_(select(Recipient.document_id).where(Recipient.agency_id.in_(sandbox))),
        )
    )


def senders(session: Session, start: datetime | None = None, end: datetime | None = None) -> Counter[int]:
    """Documents sent per agency id (in [start, end) when given); certification traffic left out."""
    query = (
        select(Document.sender_id, func.count())
        .where(Document.id.not_in(_sandbox_documents()))
        .group_by(Document.sender_id)
    )
    if start is not None and end is not None:
        query = query.where(_in(Document.created_at, start, end))
    return Counter(dict(session.execute(query).all()))


def receivers(session: Session, start: datetime | None = None, end: datetime | None = None) -> Counter[int]:
    """Documents fetched per agency id (first fetch in [start, end) when given)."""
    query = (
        select(Delivery.agency_id, func.count())
        .where(
            Delivery.kind == "document",
            Delivery.fetched_at.is_not(None),
            Delivery.document_id.not_in(_sandbox_documents()),
        )
        .group_by(Delivery.agency_id)
    )
    if start is not None and end is not None:
        query = query.where(_in(Delivery.fetched_at, start, end))
    return Counter(dict(session.execute(query).all()))


def status_reporters(session: Session, start: datetime | None = None, end: datetime | None = None) -> Counter[int]:
    """Statuses 02-06 reported per agency id (in [start, end) when given)."""
    query = (
        select(StatusEvent.reporter_agency_id, func.count())
        .where(StatusEvent.code.in_(REPORTED_STATUS_CODES), StatusEvent.document_id.not_in(_sandbox_documents()))
        .group_by(StatusEvent.reporter_agency_id)
    )
    if start is not None and end is not None:
        query = query.where(_in(StatusEvent.reported_at, start, end))
    return Counter(dict(session.execute(query).all()))


# -- the interconnection report ----------------------------------------------------------------


@dataclass(frozen=True)
class LevelStats:
    """One line of the interconnection report; ``level`` None is the all-levels total.

    ``sent``/``received``/``reported_status`` count agencies; ``documents_*`` count documents.
    ``status_counts`` counts status events by the level of the agency that reported them.
    """

    level: int | None
    agencies: int
    active: int
    connected: int
    sent: int
    received: int
    reported_status: int
    documents_sent: int
    documents_received: int
    status_counts: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "all levels" if self.level is None else f"{self.level} {LEVEL_NAMES.get(self.level, '')}".strip()


@dataclass(frozen=True)
class InterconnectionReport:
    """The report for [start, end); ``connected`` is judged at ``as_of``."""

    start: datetime
    end: datetime
    as_of: datetime
    levels: tuple[LevelStats, ...]
    total: LevelStats


def interconnection_report(
    session: Session, start: datetime, end: datetime, as_of: datetime | None = None
) -> InterconnectionReport:
    """Per agency level: connected, sending, receiving and status-reporting agencies in [start, end)."""
    if end <= start:
        raise ValueError(f"empty period: end {end.isoformat()} is not after start {start.isoformat()}")
    as_of = as_of or end
    agencies = session.execute(select(Agency.id, Agency.level, Agency.active).where(Agency.sandbox.is_(False))).all()
    level_of = {agency_id: level for agency_id, level, _ in agencies}
    connected = connected_agencies(session, as_of)
    sent = senders(session, start, end)
    received = receivers(session, start, end)
    reported = status_reporters(session, start, end)
    events = session.execute(
        select(Agency.level, StatusEvent.code, func.count())
        .join(Agency, Agency.id == StatusEvent.reporter_agency_id)
        .where(
            _in(StatusEvent.reported_at, start, end),
            Agency.sandbox.is_(False),
            StatusEvent.document_id.not_in(_sandbox_documents()),
        )
        .group_by(Agency.level, StatusEvent.code)
    )
    codes_by_level: dict[int, Counter[str]] = {}
    for level, code, count in events:
        codes_by_level.setdefault(level, Counter())[code] += count

    def stats(level: int | None) -> LevelStats:
        members = {a for a, lv, _ in agencies if level is None or lv == level}
        codes: Counter[str] = Counter()
        for lv, counter in codes_by_level.items():
            if level is None or lv == level:
                codes.update(counter)
        return LevelStats(
            level=level,
            agencies=len(members),
            active=sum(1 for a, lv, active in agencies if a in members and active),
            connected=len(members & connected),
            sent=len(members & set(sent)),
            received=len(members & set(received)),
            reported_status=len(members & set(reported)),
            documents_sent=sum(n for a, n in sent.items() if a in members),
            documents_received=sum(n for a, n in received.items() if a in members),
            status_counts={code: codes[code] for code in STATUS_NAMES if codes[code]},
        )

    levels = tuple(stats(level) for level in sorted(set(level_of.values())))
    return InterconnectionReport(start, end, as_of, levels, stats(None))


# -- test grades -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgencyGrade:
    """How far one agency has come, in the words of the 2016 interconnection tests."""

    code: str
    name: str
    level: int
    parent_code: str | None
    active: bool
    connected: bool
    sends: bool
    receives: bool
    reports_status: bool

    @property
    def grade(self) -> str:
        if not self.connected:
            return NOT_CONNECTED
        if not (self.sends and self.receives):
            return CONNECTED
        return REPORTS_STATUS if self.reports_status else SENDS_AND_RECEIVES


def connection_grades(
    session: Session, as_of: datetime | None = None, start: datetime | None = None, end: datetime | None = None
) -> list[AgencyGrade]:
    """Every agency's grade at ``as_of`` (default now), from its activity ever or in [start, end)."""
    as_of = as_of or datetime.now(UTC)
    connected = connected_agencies(session, as_of)
    sent = senders(session, start, end)
    received = receivers(session, start, end)
    reported = status_reporters(session, start, end)
    return [
        AgencyGrade(
            code=a.code,
            name=a.name,
            level=a.level,
            parent_code=a.parent_code,
            active=a.active,
            connected=a.id in connected,
            sends=sent[a.id] > 0,
            receives=received[a.id] > 0,
            reports_status=reported[a.id] > 0,
        )
        for a in session.scalars(select(Agency).where(Agency.sandbox.is_(False)).order_by(Agency.level, Agency.code))
    ]


def grade_counts(grades: Iterable[AgencyGrade]) -> dict[int, dict[str, int]]:
    """Agencies per grade for each level, e.g. ``{1: {"sends and receives": 5, ...}}``."""
    counts: dict[int, dict[str, int]] = {}
    for grade in grades:
        per_level = counts.setdefault(grade.level, dict.fromkeys(GRADES, 0))
        per_level[grade.grade] += 1
    return dict(sorted(counts.items()))


# -- documents in flight, overdue, failed deliveries -------------------------------------------


@dataclass(frozen=True)
class CopyState:
    """One recipient's copy of a document and where its processing stands."""

    document_id: str
    edxml_document_id: str
    code: str
    subject: str
    sender_code: str
    recipient_code: str
    status: str | None
    status_at: datetime | None
    sent_at: datetime
    due_date: date | None


@dataclass(frozen=True)
class OverdueCopy(CopyState):
    """A copy past its DueDate unfinished, or not acknowledged within the allowed hours."""

    past_due: bool
    unacknowledged_since: datetime | None

    @property
    def reasons(self) -> tuple[str, ...]:
        found = []
        if self.past_due:
            found.append("past due date")
        if self.unacknowledged_since is not None:
            found.append("not acknowledged")
        return tuple(found)


def copies_query() -> Any:
    sender = aliased(Agency)
    addressee = aliased(Agency)
    return (
        select(Document, Recipient, sender.code, addressee.code)
        .join(Recipient, Recipient.document_id == Document.id)
        .join(sender, sender.id == Document.sender_id)
        .join(addressee, addressee.id == Recipient.agency_id)
        .where(
            Document.recalled_at.is_(None),
            or_(Recipient.status.is_(None), Recipient.status.not_in(FINAL_CODES)),
            or_(Recipient.recall_state.is_(None), Recipient.recall_state != "15"),
        )
        .order_by(Document.created_at, Document.id, Recipient.id)
    )


def copy_state(document: Document, recipient: Recipient, sender_code: str, recipient_code: str) -> CopyState:
    return CopyState(
        document_id=document.id,
        edxml_document_id=document.edxml_document_id,
        code=f"{document.code_number}/{document.code_notation}",
        subject=document.subject,
        sender_code=sender_code,
        recipient_code=recipient_code,
        status=recipient.status,
        status_at=recipient.status_at,
        sent_at=document.created_at,
        due_date=document.due_date,
    )


def documents_in_flight(session: Session) -> list[CopyState]:
    """Copies still being processed: not completed (06), rejected (02) nor recalled, oldest first."""
    return [copy_state(*row) for row in session.execute(copies_query())]


def overdue_documents(session: Session, now: datetime, ack_overdue_hours: int) -> list[OverdueCopy]:
    """In-flight copies past their DueDate, or whose document item is unacknowledged for N hours."""
    today = now.astimezone(VIETNAM_TIME).date()
    cutoff = now - timedelta(hours=ack_overdue_hours)
    stale = {
        (document_id, agency_id): created_at
        for document_id, agency_id, created_at in session.execute(
            select(Delivery.document_id, Delivery.agency_id, Delivery.created_at).where(
                Delivery.kind == "document", Delivery.state == "pending", Delivery.created_at <= cutoff
            )
        )
    }
    overdue = []
    for document, recipient, sender_code, recipient_code in session.execute(copies_query()):
        past_due = document.due_date is not None and document.due_date < today
        since = stale.get((document.id, recipient.agency_id))
        if past_due or since is not None:
            base = copy_state(document, recipient, sender_code, recipient_code)
            overdue.append(OverdueCopy(**dataclasses.asdict(base), past_due=past_due, unacknowledged_since=since))
    return overdue


@dataclass(frozen=True)
class FailedDelivery:
    """A queue item that did not reach its agency: withdrawn, or leased often and never acknowledged."""

    item_id: str
    kind: str
    agency_code: str
    document_id: str
    edxml_document_id: str
    state: str
    attempts: int
    created_at: datetime
    fetched_at: datetime | None
    reason: str


def failed_condition(max_attempts: int = 3) -> ColumnElement[bool]:
    """A delivery that failed: withdrawn, or leased more than ``max_attempts`` times without acknowledgement."""
    return or_(
        Delivery.state == "withdrawn",
        and_(Delivery.attempts > max_attempts, Delivery.acked_at.is_(None), Delivery.state != "acked"),
    )


def failed_deliveries_query(max_attempts: int = 3) -> Select[Delivery, str, str]:
    """Failed deliveries with their agency code and DocumentId, oldest first (rows for :func:`failed_delivery`)."""
    return (
        select(Delivery, Agency.code, Document.edxml_document_id)
        .join(Agency, Agency.id == Delivery.agency_id)
        .join(Document, Document.id == Delivery.document_id)
        .where(failed_condition(max_attempts))
        .order_by(Delivery.created_at, Delivery.id)
    )


def failed_delivery(row: Any) -> FailedDelivery:
    """One row of :func:`failed_deliveries_query` as a :class:`FailedDelivery`."""
    delivery, code, edxml_id = row
    return FailedDelivery(
        item_id=delivery.id,
        kind=delivery.kind,
        agency_code=code,
        document_id=delivery.document_id,
        edxml_document_id=edxml_id,
        state=delivery.state,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        fetched_at=delivery.fetched_at,
        reason="withdrawn" if delivery.state == "withdrawn" else f"{delivery.attempts} attempts, never acknowledged",
    )


def failed_deliveries(session: Session, max_attempts: int = 3) -> list[FailedDelivery]:
    """Withdrawn items, and items leased more than ``max_attempts`` times without acknowledgement."""
    return [failed_delivery(row) for row in session.execute(failed_deliveries_query(max_attempts))]


# -- CSV ---------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, tuple | list):
        return "; ".join(str(v) for v in value)
    return "" if value is None else value


def write_csv(rows: Sequence[Any], out: TextIO, extra: Sequence[str] = ()) -> None:
    """Write dataclass instances as CSV, one column per field plus ``extra`` properties (formulas neutralised)."""
    if not rows:
        return
    columns = [f.name for f in dataclasses.fields(rows[0])] + list(extra)
    writer = csvout.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(getattr(row, c)) for c in columns])


INTERCONNECTION_COLUMNS = (
    "level",
    "agencies",
    "active",
    "connected",
    "sent",
    "received",
    "reported_status",
    "documents_sent",
    "documents_received",
)


def interconnection_table(report: InterconnectionReport) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the report (levels then the total), one column per status code."""
    header = [*INTERCONNECTION_COLUMNS, *(f"status_{code}" for code in STATUS_NAMES)]
    rows = []
    for stats in (*report.levels, report.total):
        values: list[Any] = ["all" if stats.level is None else stats.level]
        values += [getattr(stats, c) for c in INTERCONNECTION_COLUMNS[1:]]
        values += [stats.status_counts.get(code, 0) for code in STATUS_NAMES]
        rows.append(values)
    return header, rows


def write_interconnection_csv(report: InterconnectionReport, out: TextIO) -> None:
    """The report as CSV, with the period in the first two columns of every row."""
    header, rows = interconnection_table(report)
    writer = csvout.writer(out)
    writer.writerow(["period_start", "period_end", *header])
    for row in rows:
        writer.writerow([_cell(report.start), _cell(report.end), *row])
