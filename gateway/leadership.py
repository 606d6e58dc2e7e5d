"""The leadership's view: how each agency, and each level, handles the documents it receives.

Leaders follow how each ministry and province handles its work through the statuses the exchange
records automatically (mission.md). For a period of Vietnam days, per recipient agency and per
level: documents received, the share completed (06), the share completed on or before its DueDate
(of those that have one), the median time from arrival (01, recorded when the recipient fetched
it) to acceptance (03) and to completion (06), and how many are overdue now (past DueDate, neither
completed nor rejected). The trend counts documents sent and statuses reported per day.

The sandbox agency of certification runs, and every document it sends or receives, is left out:
test traffic is never counted in real reports. One function computes the numbers; the CLI, the
CSV and the page only format them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, func, select, true
from sqlalchemy.orm import Session, aliased

from gateway.reports import VIETNAM_TIME, day_start
from gateway.store.models import Agency, Document, Recipient, StatusEvent

TREND_CODES = ("01", "02", "03", "04", "05", "06")
FINAL = ("02", "06")


@dataclass
class Handling:
    """The numbers of one agency or one level; shares are None where nothing can be counted."""

    received: int = 0
    completed: int = 0
    with_due_date: int = 0
    completed_on_time: int = 0
    overdue: int = 0
    to_acceptance: list[float] = field(default_factory=list)
    to_completion: list[float] = field(default_factory=list)

    @property
    def completed_share(self) -> float | None:
        return self.completed / self.received if self.received else None

    @property
    def on_time_share(self) -> float | None:
        return self.completed_on_time / self.with_due_date if self.with_due_date else None

    @property
    def median_hours_to_acceptance(self) -> float | None:
        return statistics.median(self.to_acceptance) if self.to_acceptance else None

    @property
    def median_hours_to_completion(self) -> float | None:
        return statistics.median(self.to_completion) if self.to_completion else None

    def add(self, other: Handling) -> None:
        self.received += other.received
        self.completed += other.completed
        self.with_due_date += other.with_due_date
        self.completed_on_time += other.completed_on_time
        self.overdue += other.overdue
        self.to_acceptance += other.to_acceptance
        self.to_completion += other.to_completion


@dataclass(frozen=True)
class AgencyHandling:
    code: str
    name: str
    level: int
    handling: Handling


@dataclass(frozen=True)
class TrendDay:
    day: date
    documents: int
    statuses: dict[str, int]


@dataclass(frozen=True)
class LeadershipView:
    first: date
    last: date
    at: datetime
    levels: dict[int, Handling]
    agencies: list[AgencyHandling]
    trend: list[TrendDay]


def _vn_date(moment: datetime) -> date:
    return moment.astimezone(VIETNAM_TIME).date()


def _hours(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds() / 3600


def leadership_view(session: Session, first: date, last: date, now: datetime) -> LeadershipView:
    """The numbers for Vietnam days ``first`` through ``last`` (documents sent in that period)."""
    start, end = day_start(first), day_start(last + timedelta(days=1))
    sender = aliased(Agency)
    sandbox_ids = set(session.scalars(select(Agency.id).where(Agency.sandbox.is_(True))))
    copies = session.execute(
        select(
            Recipient.document_id,
            Recipient.agency_id,
            Recipient.status,
            Document.due_date,
            Agency.code,
            Agency.name,
            Agency.level,
        )
        .join(Document, Document.id == Recipient.document_id)
        .join(Agency, Agency.id == Recipient.agency_id)
        .join(sender, sender.id == Document.sender_id)
        .where(
            Document.created_at >= start,
            Document.created_at < end,
            Agency.sandbox.is_(False),
            sender.sandbox.is_(False),
        )
    ).all()
    firsts: dict[tuple[str, int, str], datetime] = {
        (document_id, agency_id, code): at
        for document_id, agency_id, code, at in session.execute(
            select(
                StatusEvent.document_id,
                StatusEvent.recipient_agency_id,
                StatusEvent.code,
                func.min(StatusEvent.reported_at),
            )
            .join(Document, Document.id == StatusEvent.document_id)
            .where(Document.created_at >= start, Document.created_at < end, StatusEvent.code.in_(("01", "03", "06")))
            .group_by(StatusEvent.document_id, StatusEvent.recipient_agency_id, StatusEvent.code)
        )
    }
    today = _vn_date(now)
    per_agency: dict[str, AgencyHandling] = {}
    for document_id, agency_id, status, due, code, name, level in copies:
        entry = per_agency.setdefault(code, AgencyHandling(code, name, level, Handling()))
        numbers = entry.handling
        numbers.received += 1
        arrived = firsts.get((document_id, agency_id, "01"))
        accepted = firsts.get((document_id, agency_id, "03"))
        completed = firsts.get((document_id, agency_id, "06"))
        if completed is not None:
            numbers.completed += 1
        if due is not None:
            numbers.with_due_date += 1
            if completed is not None and _vn_date(completed) <= due:
                numbers.completed_on_time += 1
            if status not in FINAL and due < today:
                numbers.overdue += 1
        if (hours := _hours(arrived, accepted)) is not None:
            numbers.to_acceptance.append(hours)
        if (hours := _hours(arrived, completed)) is not None:
            numbers.to_completion.append(hours)
    levels: dict[int, Handling] = defaultdict(Handling)
    for entry in per_agency.values():
        levels[entry.level].add(entry.handling)
    agencies = sorted(per_agency.values(), key=lambda a: (a.level, a.code))
    return LeadershipView(
        first, last, now, dict(sorted(levels.items())), agencies, _trend(session, first, last, start, end, sandbox_ids)
    )


def _trend(
    session: Session, first: date, last: date, start: datetime, end: datetime, sandbox_ids: Iterable[int]
) -> list[TrendDay]:
    excluded = list(sandbox_ids)
    documents: dict[date, int] = defaultdict(int)
    real_document = (
        and_(
            Document.sender_id.not_in(excluded),
            Document.id.not_in(select(Recipient.document_id).where(Recipient.agency_id.in_(excluded))),
        )
        if excluded
        else true()
    )
    for (created,) in session.execute(
        select(Document.created_at).where(Document.created_at >= start, Document.created_at < end, real_document)
    ):
        documents[_vn_date(created)] += 1
    statuses: dict[date, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TREND_CODES, 0))
    real_event = (
        and_(StatusEvent.recipient_agency_id.not_in(excluded), Document.sender_id.not_in(excluded))
        if excluded
        else true()
    )
    for code, at in session.execute(
        select(StatusEvent.code, StatusEvent.reported_at)
        .join(Document, Document.id == StatusEvent.document_id)
        .where(
            StatusEvent.reported_at >= start,
            StatusEvent.reported_at < end,
            StatusEvent.code.in_(TREND_CODES),
            real_event,
        )
    ):
        statuses[_vn_date(at)][code] += 1
    days = []
    day = first
    while day <= last:
        days.append(
            TrendDay(
                day, documents.get(day, 0), dict(statuses[day]) if day in statuses else dict.fromkeys(TREND_CODES, 0)
            )
        )
        day += timedelta(days=1)
    return days


CSV_COLUMNS = (
    "scope",
    "level",
    "code",
    "name",
    "received",
    "completed",
    "completed_share",
    "completed_on_time",
    "with_due_date",
    "on_time_share",
    "median_hours_to_acceptance",
    "median_hours_to_completion",
    "overdue",
)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def rows(view: LeadershipView) -> list[dict[str, str]]:
    """Every level, then every agency, as flat rows (what the CSV and the CLI print)."""

    def row(scope: str, level: int, code: str, name: str, h: Handling) -> dict[str, str]:
        return {
            "scope": scope,
            "level": str(level),
            "code": code,
            "name": name,
            "received": str(h.received),
            "completed": str(h.completed),
            "completed_share": _fmt(h.completed_share),
            "completed_on_time": str(h.completed_on_time),
            "with_due_date": str(h.with_due_date),
            "on_time_share": _fmt(h.on_time_share),
            "median_hours_to_acceptance": _fmt(h.median_hours_to_acceptance, 2),
            "median_hours_to_completion": _fmt(h.median_hours_to_completion, 2),
            "overdue": str(h.overdue),
        }

    return [row("level", level, "", "", handling) for level, handling in view.levels.items()] + [
        row("agency", a.level, a.code, a.name, a.handling) for a in view.agencies
    ]
