"""Status handling: who may report what about a document, its history, recall and take-back.

The rules themselves are :mod:`gateway.exchange.workflow` (pure); this module applies them to
stored copies, builds and stores each status message (a validated edXML file in the blob
store), records the event and queues the message for the agency that must hear about it.
:class:`gateway.exchange.service.ExchangeService` delegates its status operations here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session, aliased

from gateway.config import Settings
from gateway.edxml import status_bytes
from gateway.edxml.model import Organization, ResponseFor, StaffInfo, StatusMessage
from gateway.errors import NotFound
from gateway.exchange import workflow
from gateway.exchange.results import Caller, StatusEntry, StatusReceipt
from gateway.exchange.workflow import Status
from gateway.federation import hooks as federation
from gateway.store import audit, queue
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, Document, Recipient, StatusEvent, table_of

VIETNAM_TIME = timezone(timedelta(hours=7), "ICT")
"""edXML timestamps carry no zone; QCVN 102 senders write Vietnam local time (UTC+7, no DST)."""

_EVENTS = table_of(StatusEvent)
_Sender = aliased(Agency)
SUBJECT_COLUMNS = (
    select(
        Document.id,
        Document.sender_id,
        _Sender.code,
        _Sender.name,
        Document.code_number,
        Document.code_notation,
        Document.edxml_document_id,
        Document.promulgation_date,
        _Sender.home_instance,
    )
    .select_from(Document)
    .join(_Sender, _Sender.id == Document.sender_id)
)
"""What :meth:`Subject.of` reads, for whichever documents a query picks."""
SUBJECT = SUBJECT_COLUMNS.where(Document.id == bindparam("document_id"))
"""A status message's :class:`Subject` (its first nine columns; callers may add columns after them)."""


@dataclass(frozen=True)
class Party:
    """An agency as a status names it: its id, code and name, and the instance serving it (None: here)."""

    agency_id: int
    code: str
    name: str
    home: str | None = None

    @classmethod
    def of(cls, caller: Caller) -> Party:
        return cls(caller.agency_id, caller.code, caller.name)


@dataclass(frozen=True)
class Subject:
    """What a status message says about its document (the edXML ResponseFor) and who sent it."""

    document_id: str
    sender: Party
    code: str
    edxml_document_id: str
    promulgation_date: date

    @property
    def sender_id(self) -> int:
        return self.sender.agency_id

    @classmethod
    def of(cls, row: Sequence[Any]) -> Subject:
        document_id, sender_id, sender_code, sender_name, number, notation, edxml_id, promulgated, home = row[:9]
        sender = Party(sender_id, sender_code, sender_name, home)
        return cls(document_id, sender, f"{number}/{notation}", edxml_id, promulgated)


def subject_of(session: Session, document_id: str) -> Subject | None:
    """The document a status is about, in one query (its sender's code included)."""
    row = session.execute(SUBJECT, {"document_id": document_id}).first()
    return Subject.of(row) if row is not None else None


@dataclass(frozen=True)
class TakenBack:
    """What a take-back did: who was asked to answer (13), and whose copy never left this instance."""

    notified: tuple[str, ...]
    withdrawn_in_transit: frozenset[str]


class Statuses:
    """Status reports, histories and take-backs, on one store."""

    def __init__(self, db: Database, blobs: BlobStore, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.blobs = blobs
        self.settings = settings
        self.clock = clock

    def update(
        self,
        caller: Caller,
        document_id: str,
        code: str,
        description: str | None = None,
        staff: StaffInfo | None = None,
    ) -> StatusReceipt:
        """Record a status the caller reports about a document, and queue its status message.

        Recipients report 01-06 about their copy and answer a take-back request with 15/16;
        the sender reports 13 to recall the document from every recipient.
        """
        status = workflow.parse(code)
        description = (description or "").strip() or None
        workflow.check_reason(status, description)
        now = self.clock()
        with self.db.transaction() as session:
            subject = subject_of(session, document_id)
            if subject is None:
                raise document_not_found(document_id)
            recipient = _recipient_row(session, subject.document_id, caller.agency_id, lock=True)
            is_sender = subject.sender_id == caller.agency_id
            if recipient is None and not is_sender:
                raise document_not_found(document_id)
            if is_sender and (status == Status.RECALL_REQUESTED or recipient is None):
                workflow.check_transition(None, None, status, sender=True)
                document = session.get_one(Document, subject.document_id)
                document.recalled_at = now
                notified = self.take_back(session, document, None, now, notice=(description, staff)).notified
                return StatusReceipt(subject.document_id, caller.code, status, now, notified)
            assert recipient is not None
            current = Status(recipient.status) if recipient.status else None
            recall = Status(recipient.recall_state) if recipient.recall_state else None
            workflow.check_transition(current, recall, status)
            if status in workflow.RECALL_ANSWERS:
                recipient.recall_state = status
            else:
                recipient.status, recipient.status_at = status, now
            notified = self.record(
                session,
                subject,
                about=Party.of(caller),
                reporter=Party.of(caller),
                code=status,
                description=description,
                staff=staff,
                now=now,
            )
            return StatusReceipt(subject.document_id, caller.code, status, now, notified)

    def history(self, caller: Caller, document_id: str) -> list[StatusEntry]:
        """Every status of a document: all recipients for its sender, its own copy for a recipient."""
        recipient_agency, reporter_agency = aliased(Agency), aliased(Agency)
        with self.db.transaction(readonly=True) as session:
            found = session.execute(select(Document.id, Document.sender_id).where(Document.id == document_id)).first()
            if found is None:
                raise document_not_found(document_id)
            query = (
                select(StatusEvent, recipient_agency.code, recipient_agency.name, reporter_agency.code)
                .join(recipient_agency, recipient_agency.id == StatusEvent.recipient_agency_id)
                .join(reporter_agency, reporter_agency.id == StatusEvent.reporter_agency_id)
                .where(StatusEvent.document_id == found.id)
            )
            if found.sender_id != caller.agency_id:
                if _recipient_row(session, found.id, caller.agency_id) is None:
                    raise document_not_found(document_id)
                query = query.where(StatusEvent.recipient_agency_id == caller.agency_id)
            rows = session.execute(query.order_by(StatusEvent.reported_at, StatusEvent.id))
            return [
                federation.as_delivery_report(
                    StatusEntry(
                        document_id=found.id,
                        recipient_code=recipient_code,
                        recipient_name=recipient_name,
                        status_code=e.code,
                        status_name=workflow.status_name(e.code),
                        description=e.description,
                        staff_department=e.staff_department,
                        staff_name=e.staff_name,
                        reporter_code=reporter_code,
                        reported_at=e.reported_at,
                    )
                )
                for e, recipient_code, recipient_name, reporter_code in rows
            ]

    def take_back(
        self,
        session: Session,
        original: Document,
        agency_ids: set[int] | None,
        now: datetime,
        notice: tuple[str | None, StaffInfo | None] | None,
        *,
        notice_forwarded: bool = False,
    ) -> TakenBack:
        """Recall (13) or supersede (BussinessDocType 1/2/3) ``original`` for some or all recipients.

        Copies never fetched are withdrawn from the queue, copies for other instances that never
        left this one are taken out of their consignment, and both are answered 15 by the gateway
        itself; fetched copies await the recipient's 15/16. With ``notice`` set (a 13 from the
        sender), each of those recipients also gets a status-13 message in its queue, relayed when
        it is served elsewhere, unless ``notice_forwarded`` (a relaying hop forwards the sender's
        own 13 for those, and leaves their state to the instance that serves them).
        """
        subject = subject_of(session, original.id)
        assert subject is not None
        rows = session.execute(
            select(Recipient, Agency.code, Agency.name, Agency.home_instance)
            .join(Agency, Agency.id == Recipient.agency_id)
            .where(Recipient.document_id == original.id)
            .order_by(Recipient.id)
        ).all()
        concerned = [
            (r, Party(r.agency_id, code, name, home))
            for r, code, name, home in rows
            if agency_ids is None or r.agency_id in agency_ids
        ]
        # Rows are locked in the order a fetch locks them, queue item first, then the copy (its 01):
        # the copies are read unlocked here and only written (locked) after the withdrawal.
        withdrawn = queue.withdraw(session, original.id, [r.agency_id for r, _ in concerned], now)
        unfetched = {d.agency_id for d in withdrawn}
        in_transit = federation.withdraw_in_transit(
            session, self.settings, original.id, [party for _, party in concerned], now
        )
        unfetched |= in_transit
        notified: list[str] = []
        for recipient, party in concerned:
            if recipient.status == Status.REJECTED or recipient.recall_state == Status.RECALL_AGREED:
                continue
            if recipient.agency_id in unfetched:
                recipient.recall_state = Status.RECALL_AGREED
                self.record(
                    session,
                    subject,
                    about=party,
                    reporter=party,
                    code=Status.RECALL_AGREED,
                    description=(
                        "Withdrawn by the gateway before it left for the recipient's instance."
                        if recipient.agency_id in in_transit
                        else "Withdrawn by the gateway before the recipient fetched it."
                    ),
                    staff=None,
                    now=now,
                )
                continue
            if notice_forwarded and federation.served_elsewhere(self.settings, party.home):
                continue
            recipient.recall_state = Status.RECALL_REQUESTED
            if notice is not None:
                description, staff = notice
                self.record(
                    session,
                    subject,
                    about=party,
                    reporter=subject.sender,
                    code=Status.RECALL_REQUESTED,
                    description=description,
                    staff=staff,
                    now=now,
                    notify=party,
                )
                notified.append(party.code)
        audit.append(
            session,
            actor=subject.sender.code,
            action="take_back",
            document_id=original.id,
            detail={"withdrawn_unfetched": sorted(unfetched), "asked": notified},
            at=now,
        )
        return TakenBack(tuple(notified), frozenset(p.code for r, p in concerned if r.agency_id in in_transit))

    def message_file(
        self,
        subject: Subject,
        *,
        reporter: Party,
        code: Status,
        description: str | None,
        staff: StaffInfo | None,
        now: datetime,
    ) -> bytes:
        """Build and validate a status message's file, for a caller to store before its transaction.

        Storing fsyncs; inside a write transaction on SQLite the fsyncs would hold every writer's
        lock, so a fetch stores its 01s first (several at once for a batch) and passes each to
        :meth:`record` as ``stored``.
        """
        message = StatusMessage(
            sender=Organization(reporter.code, reporter.name),
            response_for=ResponseFor(
                organ_id=subject.sender.code,
                code=subject.code,
                document_id=subject.edxml_document_id,
                promulgation_date=subject.promulgation_date,
            ),
            status_code=code,
            timestamp=now.astimezone(VIETNAM_TIME).replace(microsecond=0),
            staff=staff,
            description=description,
        )
        return status_bytes(message)

    def record(
        self,
        session: Session,
        subject: Subject,
        *,
        about: Party,
        reporter: Party,
        code: Status,
        description: str | None,
        staff: StaffInfo | None,
        now: datetime,
        notify: Party | None = None,
        stored: tuple[str, int] | None = None,
        writes: audit.Writes | None = None,
    ) -> tuple[str, ...]:
        """Build, validate and store the status message, record the event, queue it for one agency.

        ``about`` is the recipient whose copy the status concerns. By default the message goes to
        the document's sender (a recipient reporting); a recall notice (13) goes to ``notify``.
        Takes plain values, not entities, so that recording the automatic 01 on a fetch costs
        two INSERTs and the audit entry, nothing more. ``stored`` is the message's file when the
        caller stored it before its transaction (:meth:`message_file`, same arguments and time).
        With ``writes`` the queue item and the audit entry are added there for the caller to write
        along with its own (:class:`audit.Writes`: one round trip for all of them on PostgreSQL).
        """
        sha256, size = stored or self.blobs.put_bytes(
            self.message_file(subject, reporter=reporter, code=code, description=description, staff=staff, now=now)
        )
        event_id = session.execute(
            insert(_EVENTS).returning(_EVENTS.c.id),
            {
                "document_id": subject.document_id,
                "recipient_agency_id": about.agency_id,
                "reporter_agency_id": reporter.agency_id,
                "code": str(code),
                "description": description,
                "staff_department": staff.department if staff else None,
                "staff_name": staff.staff if staff else None,
                "staff_email": staff.email if staff else None,
                "staff_mobile": staff.mobile if staff else None,
                "reported_at": now,
                "blob_sha256": sha256,
                "blob_size": size,
            },
        ).scalar_one()
        target = notify or subject.sender
        relayed = federation.relay_status(
            session,
            self.settings,
            subject=subject,
            target=target,
            about=about,
            reporter=reporter,
            code=str(code),
            reported_at=now,
            description=description,
            staff=staff,
            sha256=sha256,
            size=size,
        )
        entry = audit.Record(
            reporter.code, "status", subject.document_id, {"code": str(code), "recipient": about.code, "sha256": sha256}
        )
        if writes is None:
            items = [] if relayed else [queue.status_item_row(target.agency_id, subject.document_id, event_id, now)]
            audit.insert_then_append(self.db, session, [(queue.INSERT_ITEMS, items)], [entry], now)
        else:
            if not relayed:
                item = queue.status_item_row(target.agency_id, subject.document_id, event_id, now)
                writes.inserts.append((queue.INSERT_ITEMS, [item]))
            writes.records.append(entry)
        return (target.code,)


def _recipient_row(session: Session, document_id: str, agency_id: int, lock: bool = False) -> Recipient | None:
    query = select(Recipient).where(Recipient.document_id == document_id, Recipient.agency_id == agency_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def document_not_found(document_id: str) -> NotFound:
    return NotFound(
        f"No document '{document_id}' was sent by or to your agency. Use the documentId from sendDocument "
        "or getPendingDocuments."
    )
