"""The exchange: send, pull, fetch, acknowledge, report status, recall.

This is the only place that knows the rules of the exchange. It takes plain values from the
protocol layer, validates edXML through :mod:`gateway.edxml`, keeps state through
:mod:`gateway.store`, and raises :mod:`gateway.errors` for everything it refuses.

Durability order, everywhere: a blob (edXML file) is written and fsynced before the
transaction that names it commits, and the transaction commits before the caller is answered.
A crash therefore leaves at worst an unreferenced blob, never a row pointing at nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from sqlalchemy import bindparam, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.edxml import read_document, status_bytes
from gateway.edxml.model import DocumentMessage, Organization, ResponseFor, StaffInfo, StatusMessage
from gateway.edxml.signature import verify_signature
from gateway.errors import (
    AuthenticationFailed,
    Forbidden,
    IllegalTransition,
    InvalidStatus,
    NotFound,
    SenderMismatch,
    ServerError,
    SignatureRequired,
    UnknownRecipient,
)
from gateway.exchange import workflow
from gateway.exchange.credentials import secret_matches
from gateway.exchange.results import (
    AgencyView,
    Caller,
    FetchedItem,
    PendingItem,
    SendReceipt,
    StatusEntry,
    StatusReceipt,
)
from gateway.federation import hooks as federation
from gateway.store import audit, queue
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, Credential, Delivery, Document, Recipient, StatusEvent

Clock = Callable[[], datetime]

# Statements run on every call or every send, built once: building and keying a select like
# _LIVE_CREDENTIALS cost about 90 us of CPU per call, a third of running it on PostgreSQL.
_LIVE_CREDENTIALS = (
    select(Agency.id, Agency.code, Agency.name, Agency.require_signature, Credential.secret_hash)
    .join(Credential, Credential.agency_id == Agency.id)
    .where(
        Agency.code == bindparam("code"),
        Agency.active.is_(True),
        Credential.revoked_at.is_(None),
        or_(Credential.expires_at.is_(None), Credential.expires_at > bindparam("now")),
    )
)
_SENT_DOCUMENT = select(Document.id, Document.signer).where(
    Document.sender_id == bindparam("sender_id"), Document.edxml_document_id == bindparam("edxml_id")
)
_ACTIVE_AGENCIES = select(Agency.code, Agency.id, Agency.home_instance).where(
    Agency.code.in_(bindparam("codes", expanding=True)), Agency.active.is_(True)
)


class StagedDocument(Protocol):
    """An incoming document written to the blob store's staging area, not yet committed."""

    temp_path: Path

    def write(self, data: bytes) -> int: ...

    def flush(self) -> None: ...

    def commit(self) -> tuple[str, int]: ...

    def discard(self) -> None: ...
VIETNAM_TIME = timezone(timedelta(hours=7), "ICT")
"""edXML timestamps carry no zone; QCVN 102 senders write Vietnam local time (UTC+7, no DST)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class ExchangeService:
    """The gateway's domain operations, one method per thing an agency can do."""

    def __init__(self, db: Database, blobs: BlobStore, settings: Settings, clock: Clock = utc_now) -> None:
        self.db = db
        self.blobs = blobs
        self.settings = settings
        self.clock = clock

    # -- identity ---------------------------------------------------------------------------

    def authenticate(self, code: str | None, secret: str | None) -> Caller:
        """The agency whose live credential matches, or AuthenticationFailed (one message for all causes)."""
        refusal = AuthenticationFailed(
            "Authentication failed: send your agency code and secret in the AuthHeader (or a WS-Security "
            "UsernameToken). If they are right, ask the gateway operator whether your credential was "
            "rotated or your agency disabled."
        )
        if not code or not secret:
            raise refusal
        with self.db.transaction(readonly=True) as session:
            rows = session.execute(_LIVE_CREDENTIALS, {"code": code, "now": self.clock()})
            for agency_id, agency_code, name, require_signature, secret_hash in rows:
                if secret_matches(secret, secret_hash):
                    return Caller(agency_id, agency_code, name, require_signature)
        raise refusal

    def agencies(self, parent_code: str | None = None) -> list[AgencyView]:
        """The directory (optionally one agency's direct children), ordered by code."""
        with self.db.transaction(readonly=True) as session:
            query = select(Agency).order_by(Agency.level, Agency.code)
            if parent_code:
                query = query.where(Agency.parent_code == parent_code)
            return [
                AgencyView(a.code, a.name, a.level, a.parent_code, a.active) for a in session.scalars(query)
            ]

    # -- sending ----------------------------------------------------------------------------

    def begin_staging(self) -> StagedDocument:
        """A place to write an incoming document before it is validated (a blob not yet committed)."""
        return self.blobs.begin()

    def send_document(self, caller: Caller, staged: StagedDocument) -> SendReceipt:
        """Validate the staged edXML file, store it once, and queue it for every addressee.

        The staged file becomes the stored blob without being copied. Resending the same
        (sender, DocumentId) returns the first receipt and stores nothing.
        """
        message = read_document(staged.temp_path)
        if message.sender.organ_id != caller.code:
            raise SenderMismatch(
                f"The document's From/OrganId is '{message.sender.organ_id}' but you are authenticated as "
                f"'{caller.code}'. An agency can only send documents as itself."
            )
        edxml_id = message.document_id or _conventional_document_id(message)
        with self.db.transaction(readonly=True) as session:
            existing = _existing_receipt(session, caller, edxml_id)
            if existing is not None:
                return existing
            signer = self._check_signature(caller, message.signed, staged.temp_path)
            recipients = _resolve_recipients(session, message)
            original = self._superseded_document(session, caller, message)
            original_id = original.id if original else None
        sha256, size = staged.commit()
        try:
            with self.db.transaction() as session:
                original = session.get_one(Document, original_id) if original_id else None
                return self._store_document(
                    session, caller, message, edxml_id, sha256, size, recipients, original, signer
                )
        except IntegrityError:
            with self.db.transaction(readonly=True) as session:
                existing = _existing_receipt(session, caller, edxml_id)
            if existing is None:
                raise
            return existing

    def _check_signature(self, caller: Caller, signed: bool, staged: Path) -> str | None:
        """The verified signer, or None for an unsigned document the sender may send unsigned.

        Signatures are verified whenever the operator configured trusted certificates; an agency
        that must sign cannot send unsigned documents, nor signed ones this gateway cannot verify.
        """
        trusted, required = self.settings.trusted_certs, caller.require_signature
        if required and not signed:
            raise SignatureRequired(
                f"Agency {caller.code} is configured to sign every document, and this one carries no "
                "Signature. Sign it with your agency's certificate and send it again."
            )
        if required and trusted is None:
            raise ServerError(
                f"Agency {caller.code} must sign its documents, but this gateway has no trusted certificates "
                "configured (GATEWAY_TRUSTED_CERTS), so it cannot verify them. Nothing was sent; tell the operator."
            )
        if signed and trusted is not None:
            return verify_signature(staged, trusted)
        return None

    def _superseded_document(self, session: Session, caller: Caller, message: DocumentMessage) -> Document | None:
        """For recall/update/replace (BussinessDocType 1/2/3): the caller's earlier document it refers to."""
        business = message.business
        if business.doc_type == 0:
            return None
        target_ids = [i for i in (business.document_id, *(r.document_id for r in message.response_for)) if i]
        target_ids += list(business.replaced_document_ids)
        for target in target_ids:
            original = session.scalar(
                select(Document).where(
                    Document.sender_id == caller.agency_id, Document.edxml_document_id == target
                )
            )
            if original is not None:
                return original
        action = {1: "recall", 2: "update", 3: "replace"}.get(business.doc_type, "refer to")
        shown = ", ".join(target_ids) or "(none given)"
        raise NotFound(
            f"This document is sent to {action} an earlier document, but no document you sent through this "
            f"gateway has DocumentId {shown}. Put the original DocumentId in Bussiness/DocumentId or ResponseFor."
        )

    def _store_document(
        self,
        session: Session,
        caller: Caller,
        message: DocumentMessage,
        edxml_id: str,
        sha256: str,
        size: int,
        recipients: Sequence[tuple[int, str, str | None]],
        original: Document | None,
        signer: str | None,
    ) -> SendReceipt:
        now = self.clock()
        document_id = str(uuid.uuid4())
        session.execute(
            insert(Document.__table__),
            dict(
                id=document_id,
                sender_id=caller.agency_id,
                edxml_document_id=edxml_id,
                code_number=message.code_number,
                code_notation=message.code_notation,
                subject=message.subject,
                type_name=message.type_name,
                promulgation_date=message.promulgation_date,
                due_date=message.due_date,
                priority=message.priority,
                business_type=message.business.doc_type,
                supersedes_id=original.id if original else None,
                blob_sha256=sha256,
                size=size,
                attachment_count=len(message.attachments),
                signer=signer,
                created_at=now,
            ),
        )
        session.execute(
            insert(Recipient.__table__), [{"document_id": document_id, "agency_id": a} for a, _, _ in recipients]
        )
        # Federation hook: recipients served by another instance go to the relay outbox.
        local = federation.route_document(
            session, self.settings, document_id, caller.code, recipients, sha256, size, now
        )
        if local:
            queue.enqueue_many(session, local, queue.KIND_DOCUMENT, document_id, now)
        codes = tuple(code for _, code, _ in recipients)
        audit.append(
            session,
            actor=caller.code,
            action="send",
            document_id=document_id,
            detail={
                "edxml_document_id": edxml_id,
                "sha256": sha256,
                "size": size,
                "recipients": list(codes),
                "business_type": message.business.doc_type,
                "supersedes": original.id if original else None,
                "signer": signer,
            },
            at=now,
        )
        if original is not None:
            if message.business.doc_type == 1:
                original.recalled_at = now
            self._request_take_back(session, original, {agency_id for agency_id, _, _ in recipients}, now, notice=None)
        return SendReceipt(document_id, edxml_id, codes, duplicate=False, signer=signer)

    # -- receiving --------------------------------------------------------------------------

    def pending(self, caller: Caller, limit: int | None = None) -> list[PendingItem]:
        """Lease up to ``limit`` waiting items; they stay hidden from other pulls until the lease ends."""
        cap = self.settings.max_pending_items
        limit = cap if not limit or limit <= 0 else min(limit, cap)
        now = self.clock()
        with self.db.transaction() as session:
            leased = queue.lease_pending(session, caller.agency_id, limit, self.settings.lease_seconds, now)
            return [self._pending_view(d) for d in leased]

    def _pending_view(self, delivery: Delivery) -> PendingItem:
        document = delivery.document
        event = delivery.status_event
        assert delivery.lease_until is not None
        if event is not None and event.blob_sha256 is not None:
            size = self.blobs.size(event.blob_sha256)
        else:
            size = document.size
        return PendingItem(
            item_id=delivery.id,
            kind=delivery.kind,
            document_id=document.id,
            edxml_document_id=document.edxml_document_id,
            sender_code=document.sender.code,
            sender_name=document.sender.name,
            code=f"{document.code_number}/{document.code_notation}",
            subject=document.subject,
            promulgation_date=document.promulgation_date,
            due_date=document.due_date,
            priority=document.priority,
            business_type=document.business_type,
            status_code=event.code if event else None,
            status_from=event.reporter_agency.code if event else None,
            size=size,
            queued_at=delivery.created_at,
            lease_expires_at=delivery.lease_until,
            attempts=delivery.attempts,
            signer=document.signer,
        )

    def fetch(self, caller: Caller, item_id: str) -> FetchedItem:
        """Locate an item's edXML file; the first fetch of a document records 01 (arrived)."""
        now = self.clock()
        with self.db.transaction() as session:
            delivery = self._own_delivery(session, caller, item_id)
            queue.mark_fetched(session, delivery, now)
            if delivery.state == queue.WITHDRAWN:
                raise _withdrawn(item_id)
            document = delivery.document
            if delivery.kind == queue.KIND_DOCUMENT:
                sha256, size = document.blob_sha256, document.size
                recipient = _recipient_row(session, document.id, caller.agency_id, lock=True)
                if recipient is not None and recipient.status is None:
                    self._record_status(session, document, recipient, caller.agency_id, "01", None, None, now)
            else:
                event = delivery.status_event
                assert event is not None and event.blob_sha256 is not None
                sha256 = event.blob_sha256
                size = self.blobs.size(sha256)
            audit.append(
                session,
                actor=caller.code,
                action="fetch",
                document_id=document.id,
                detail={"item_id": delivery.id, "kind": delivery.kind, "sha256": sha256},
                at=now,
            )
            return FetchedItem(delivery.id, delivery.kind, document.id, sha256, size, self.blobs.path(sha256))

    def acknowledge(self, caller: Caller, item_id: str) -> None:
        """Take an item off the caller's pending list for good (idempotent)."""
        now = self.clock()
        with self.db.transaction() as session:
            delivery = self._own_delivery(session, caller, item_id)
            if delivery.state == queue.ACKED:
                return
            queue.acknowledge(session, delivery, now)
            audit.append(
                session,
                actor=caller.code,
                action="ack",
                document_id=delivery.document_id,
                detail={"item_id": delivery.id, "kind": delivery.kind},
                at=now,
            )

    def _own_delivery(self, session: Session, caller: Caller, item_id: str) -> Delivery:
        delivery = queue.get_for_agency(session, item_id, caller.agency_id)
        if delivery is None:
            raise NotFound(
                f"No item '{item_id}' is addressed to {caller.code}. Use an itemId from getPendingDocuments."
            )
        if delivery.state == queue.WITHDRAWN:
            raise _withdrawn(item_id)
        return delivery

    # -- status -----------------------------------------------------------------------------

    def update_status(
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
        code = (code or "").strip()
        workflow.check_known(code)
        description = (description or "").strip() or None
        if code in ("02", "16") and not description:
            raise InvalidStatus(f"Status {code} ({workflow.status_name(code)}) needs the reason in description.")
        now = self.clock()
        with self.db.transaction() as session:
            document = session.get(Document, document_id)
            if document is None:
                raise _document_not_found(document_id)
            recipient = _recipient_row(session, document.id, caller.agency_id, lock=True)
            if code == workflow.RECALL_REQUEST:
                if document.sender_id != caller.agency_id:
                    if recipient is None:
                        raise _document_not_found(document_id)
                    raise Forbidden(
                        "Only the sender of a document can recall it (13); as a recipient, answer a recall "
                        "with 15 (agreed) or 16 (refused)."
                    )
                document.recalled_at = now
                notified = self._request_take_back(
                    session, document, None, now, notice=(description, staff)
                )
                return StatusReceipt(document.id, caller.code, code, now, notified)
            if recipient is None:
                if document.sender_id == caller.agency_id:
                    raise Forbidden(
                        "You sent this document; recipients report its processing status. "
                        "To take it back, report 13 (recall)."
                    )
                raise _document_not_found(document_id)
            if code in workflow.RECALL_ANSWERS:
                if recipient.recall_state != workflow.RECALL_REQUEST:
                    raise IllegalTransition(
                        f"Status {code} answers a recall, update or replacement request, and none is "
                        "pending for your copy of this document."
                    )
                recipient.recall_state = code
            else:
                workflow.check_recipient_transition(recipient.status, code, recipient.recall_state == "15")
            notified = self._record_status(
                session, document, recipient, caller.agency_id, code, description, staff, now
            )
            return StatusReceipt(document.id, caller.code, code, now, notified)

    def history(self, caller: Caller, document_id: str) -> list[StatusEntry]:
        """Every status of a document: all recipients for its sender, its own copy for a recipient."""
        with self.db.transaction(readonly=True) as session:
            document = session.get(Document, document_id)
            if document is None:
                raise _document_not_found(document_id)
            query = select(StatusEvent).where(StatusEvent.document_id == document.id)
            if document.sender_id != caller.agency_id:
                if _recipient_row(session, document.id, caller.agency_id) is None:
                    raise _document_not_found(document_id)
                query = query.where(StatusEvent.recipient_agency_id == caller.agency_id)
            events = session.scalars(query.order_by(StatusEvent.reported_at, StatusEvent.id))
            entries = [
                StatusEntry(
                    document_id=document.id,
                    recipient_code=e.recipient_agency.code,
                    recipient_name=e.recipient_agency.name,
                    status_code=e.code,
                    status_name=workflow.status_name(e.code),
                    description=e.description,
                    staff_department=e.staff_department,
                    staff_name=e.staff_name,
                    reporter_code=e.reporter_agency.code,
                    reported_at=e.reported_at,
                )
                for e in events
            ]
        # Federation hook: the gateway's own delivery reports (code 90) name the gateway, not an agency.
        return [_delivery_report(entry) for entry in entries]

    def _request_take_back(
        self,
        session: Session,
        original: Document,
        agency_ids: set[int] | None,
        now: datetime,
        notice: tuple[str | None, StaffInfo | None] | None,
    ) -> tuple[str, ...]:
        """Recall (13) or supersede (BussinessDocType 1/2/3) ``original`` for some or all recipients.

        Copies never fetched are withdrawn from the queue and answered 15 by the gateway itself;
        fetched copies await the recipient's 15/16. With ``notice`` set (a 13 from the sender),
        each of those recipients also gets a status-13 message in its queue.
        """
        notified: list[str] = []
        unfetched = {
            d.agency_id
            for d in queue.withdraw(
                session,
                original.id,
                [r.agency_id for r in original.recipients if agency_ids is None or r.agency_id in agency_ids],
                now,
            )
        }
        for recipient in original.recipients:
            if agency_ids is not None and recipient.agency_id not in agency_ids:
                continue
            if recipient.status == "02" or recipient.recall_state == "15":
                continue
            if recipient.agency_id in unfetched:
                recipient.recall_state = "15"
                self._record_status(
                    session, original, recipient, recipient.agency_id, "15",
                    "Withdrawn by the gateway before the recipient fetched it.", None, now,
                )
                continue
            recipient.recall_state = workflow.RECALL_REQUEST
            if notice is not None:
                description, staff = notice
                self._record_status(
                    session, original, recipient, original.sender_id, "13", description, staff, now,
                    notify_agency_id=recipient.agency_id,
                )
                notified.append(recipient.agency.code)
        audit.append(
            session,
            actor=original.sender.code,
            action="take_back",
            document_id=original.id,
            detail={"withdrawn_unfetched": sorted(unfetched), "asked": notified},
            at=now,
        )
        return tuple(notified)

    def _record_status(
        self,
        session: Session,
        document: Document,
        recipient: Recipient,
        reporter_id: int,
        code: str,
        description: str | None,
        staff: StaffInfo | None,
        now: datetime,
        notify_agency_id: int | None = None,
    ) -> tuple[str, ...]:
        """Build, validate and store the status message, record the event, queue it for one agency.

        By default the message goes to the document's sender (a recipient reporting); a recall
        notice (13) goes to the recipient instead.
        """
        reporter = session.get_one(Agency, reporter_id)
        message = StatusMessage(
            sender=Organization(reporter.code, reporter.name),
            response_for=ResponseFor(
                organ_id=document.sender.code,
                code=f"{document.code_number}/{document.code_notation}",
                document_id=document.edxml_document_id,
                promulgation_date=document.promulgation_date,
            ),
            status_code=code,
            timestamp=now.astimezone(VIETNAM_TIME).replace(microsecond=0),
            staff=staff,
            description=description,
        )
        sha256, message_size = self.blobs.put_bytes(status_bytes(message))
        event = StatusEvent(
            document_id=document.id,
            recipient_agency_id=recipient.agency_id,
            reporter_agency_id=reporter_id,
            code=code,
            description=description,
            staff_department=staff.department if staff else None,
            staff_name=staff.staff if staff else None,
            staff_email=staff.email if staff else None,
            staff_mobile=staff.mobile if staff else None,
            reported_at=now,
            blob_sha256=sha256,
        )
        session.add(event)
        if code in workflow.PROCESSING_CODES:
            recipient.status = code
            recipient.status_at = now
        session.flush()
        target_id = notify_agency_id if notify_agency_id is not None else document.sender_id
        # Federation hook: a status for an agency served by another instance is relayed, not queued.
        if not federation.relay_status(session, self.settings, document, event, target_id, message_size, now):
            queue.enqueue(session, target_id, queue.KIND_STATUS, document.id, status_event_id=event.id, now=now)
        audit.append(
            session,
            actor=reporter.code,
            action="status",
            document_id=document.id,
            detail={"code": code, "recipient": recipient.agency.code, "sha256": sha256},
            at=now,
        )
        return (session.get_one(Agency, target_id).code,)


def _existing_receipt(session: Session, caller: Caller, edxml_id: str) -> SendReceipt | None:
    """The receipt of the caller's earlier document with this DocumentId, if it sent one.

    Asked on every send, so it selects two columns rather than loading a Document.
    """
    found = session.execute(_SENT_DOCUMENT, {"sender_id": caller.agency_id, "edxml_id": edxml_id}).first()
    if found is None:
        return None
    document_id, signer = found
    codes = session.scalars(
        select(Agency.code)
        .join(Recipient, Recipient.agency_id == Agency.id)
        .where(Recipient.document_id == document_id)
        .order_by(Recipient.id)
    )
    return SendReceipt(document_id, edxml_id, tuple(codes), duplicate=True, signer=signer)


def _conventional_document_id(message: DocumentMessage) -> str:
    """The DocumentId convention of the SDK when a sender leaves it out: ``From,date,Code``."""
    return f"{message.sender.organ_id},{message.promulgation_date:%Y/%m/%d},{message.code}"


def _resolve_recipients(session: Session, message: DocumentMessage) -> list[tuple[int, str, str | None]]:
    """``(agency id, code, home instance)`` of each addressee, in the document's order.

    UnknownRecipient for any other code. Agencies served by another instance are addressees too.
    """
    codes = [o.organ_id for o in message.recipients]
    rows = session.execute(_ACTIVE_AGENCIES, {"codes": codes})
    active = {code: (agency_id, home) for code, agency_id, home in rows}
    missing = [c for c in codes if c not in active]
    if missing:
        raise UnknownRecipient(
            f"These To/OrganId codes are not active agencies of the exchange: {', '.join(missing)}. "
            "Check the codes with getAgencies; nothing was sent."
        )
    return [(active[c][0], c, active[c][1]) for c in codes]


def _recipient_row(session: Session, document_id: str, agency_id: int, lock: bool = False) -> Recipient | None:
    query = select(Recipient).where(Recipient.document_id == document_id, Recipient.agency_id == agency_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def _delivery_report(entry: StatusEntry) -> StatusEntry:
    """A history entry, with the gateway named as reporter when it is a delivery report (code 90)."""
    if entry.status_code != federation.DELIVERY_REPORT:
        return entry
    return replace(
        entry, reporter_code=entry.staff_department or "gateway", status_name=entry.description or "not delivered",
        staff_department=None,
    )


def _withdrawn(item_id: str) -> NotFound:
    return NotFound(f"Item '{item_id}' was withdrawn by its sender (recalled or replaced) before you fetched it.")


def _document_not_found(document_id: str) -> NotFound:
    return NotFound(
        f"No document '{document_id}' was sent by or to your agency. Use the documentId from sendDocument "
        "or getPendingDocuments."
    )
