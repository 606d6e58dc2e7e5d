"""The exchange: send, pull, fetch, acknowledge, report status, recall.

This is the only place that knows the rules of the exchange. It takes plain values from the
protocol layer, validates edXML through :mod:`gateway.edxml`, keeps state through
:mod:`gateway.store`, and raises :mod:`gateway.errors` for everything it refuses.

Durability order, everywhere: a blob (edXML file) is written and fsynced before the
transaction that names it commits, and the transaction commits before the caller is answered.
A crash therefore leaves at worst an unreferenced blob, never a row pointing at nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from sqlalchemy import Connection, Row, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from gateway.config import Settings
from gateway.edxml import read_document
from gateway.edxml.model import DocumentMessage, StaffInfo
from gateway.edxml.reader import Source
from gateway.edxml.signature import verify_signature
from gateway.edxml.writer import default_document_id
from gateway.errors import (
    AuthenticationFailed,
    DocumentIdConflict,
    NotFound,
    SenderMismatch,
    ServerError,
    SignatureRequired,
    UnknownRecipient,
)
from gateway.exchange.addressees import AGENCIES_CHANGED, Addressee, AddresseeCache
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
from gateway.exchange.statuses import SUBJECT_COLUMNS, VIETNAM_TIME, Party, Statuses, Subject
from gateway.exchange.workflow import Status
from gateway.federation import hooks as federation
from gateway.store import audit, nonces, queue
from gateway.store.blobs import CHUNK_SIZE, BlobStore
from gateway.store.database import Database
from gateway.store.models import (
    Agency,
    Credential,
    Delivery,
    Document,
    Recipient,
    RelayState,
    StatusEvent,
    UTCDateTime,
    table_of,
)

Clock = Callable[[], datetime]

# Statements run on every call or every send, built once: building and keying a select like
# _LIVE_CREDENTIALS cost about 90 us of CPU per call, a third of running it on PostgreSQL.
# It also says whether anything is waiting for the agency: most calls are polls that find nothing,
# and answering that in the same round trip spares them a second statement (issue 13). And it
# reads the directory's change counter, which tells a send whether this worker's copy of its
# addressees is still good (gateway/exchange/addressees.py).
_NOW = bindparam("now", type_=UTCDateTime())
_LIVE_CREDENTIALS = (
    select(
        Agency.id,
        Agency.code,
        Agency.name,
        Agency.require_signature,
        Credential.secret_hash,
        queue.any_available(Agency.id, _NOW).label("waiting"),
        select(RelayState.value).where(RelayState.name == AGENCIES_CHANGED).scalar_subquery().label("changed"),
    )
    .join(Credential, Credential.agency_id == Agency.id)
    .where(
        Agency.code == bindparam("code"),
        Agency.active.is_(True),
        Credential.revoked_at.is_(None),
        or_(Credential.expires_at.is_(None), Credential.expires_at > _NOW),
    )
)
_INSERT_DOCUMENT = insert(table_of(Document))
_INSERT_RECIPIENTS = insert(table_of(Recipient))
"""A send's own rows go in with its audit entry (``audit.write_alone``): one statement on PostgreSQL."""
_OF_SENDER = (Document.sender_id == bindparam("sender_id"), Document.edxml_document_id == bindparam("edxml_id"))
_SENT_DOCUMENT = select(Document.id, Document.signer, Document.blob_sha256, Document.created_at).where(*_OF_SENDER)
_SENT_DOCUMENT_ID = select(Document.id).where(*_OF_SENDER)
"""The sender's document under a DocumentId, if any: every send asks (inside ``_ADDRESSEES``), and
a recall, update or replace finds its original with it; the whole row is read only for a resend."""
_SentDocument: TypeAlias = Row[str, str | None, str, datetime]
"""A row of ``_SENT_DOCUMENT``."""
_ADDRESSEES = select(
    Agency.code, Agency.id, Agency.home_instance, _SENT_DOCUMENT_ID.scalar_subquery().label("sent")
).where(Agency.code.in_(bindparam("codes", expanding=True)), Agency.active.is_(True))
"""A send's one read before storing: its active addressees, each row also saying whether the
sender already used this DocumentId (the uncorrelated subquery runs once). No row at all only
means no addressee is active; whether the DocumentId was used is then asked on its own."""

_Sender, _Reporter = aliased(Agency), aliased(Agency)
_PENDING_VIEWS = (
    select(
        Delivery.id.label("item_id"),
        Delivery.kind,
        Delivery.created_at,
        Delivery.lease_until,
        Delivery.attempts,
        Document.id.label("document_id"),
        Document.edxml_document_id,
        _Sender.code.label("sender_code"),
        _Sender.name.label("sender_name"),
        Document.code_number,
        Document.code_notation,
        Document.subject,
        Document.promulgation_date,
        Document.due_date,
        Document.priority,
        Document.business_type,
        Document.size,
        Document.signer,
        StatusEvent.code.label("status_code"),
        StatusEvent.blob_sha256.label("event_sha256"),
        StatusEvent.blob_size.label("event_size"),
        _Reporter.code.label("status_from"),
    )
    .join(Document, Document.id == Delivery.document_id)
    .join(_Sender, _Sender.id == Document.sender_id)
    .outerjoin(StatusEvent, StatusEvent.id == Delivery.status_event_id)
    .outerjoin(_Reporter, _Reporter.id == StatusEvent.reporter_agency_id)
    .where(Delivery.id.in_(bindparam("ids", expanding=True)))
)
"""Everything a poll lists about its leased items, in one query for any number of them."""

_RECIPIENTS = table_of(Recipient)
_ARRIVED = (
    update(_RECIPIENTS)
    .where(
        _RECIPIENTS.c.document_id == bindparam("copy_of"),
        _RECIPIENTS.c.agency_id == bindparam("held_by"),
        _RECIPIENTS.c.status.is_(None),
    )
    .values(status=Status.ARRIVED.value, status_at=bindparam("arrived_at", type_=UTCDateTime()))
    .returning(_RECIPIENTS.c.id)
)
"""Record 01 on the first fetch of a copy; atomic, so two concurrent first fetches record it once."""
_PLAN_COLUMNS = SUBJECT_COLUMNS.add_columns(
    Delivery.kind,
    Document.blob_sha256,
    Document.size,
    StatusEvent.blob_sha256.label("event_sha256"),
    StatusEvent.blob_size.label("event_size"),
    and_(
        Delivery.kind == queue.KIND_DOCUMENT,
        Delivery.state != queue.WITHDRAWN,
        _RECIPIENTS.c.id.is_not(None),
        _RECIPIENTS.c.status.is_(None),
    ).label("unarrived"),
)
_PLAN_FROM = (
    _PLAN_COLUMNS.join(Delivery, Delivery.document_id == Document.id)
    .outerjoin(StatusEvent, StatusEvent.id == Delivery.status_event_id)
    .outerjoin(
        _RECIPIENTS, and_(_RECIPIENTS.c.document_id == Document.id, _RECIPIENTS.c.agency_id == Delivery.agency_id)
    )
    .where(queue.held_by(bindparam("agency_id")))
)
_UNARRIVED = len(_PLAN_COLUMNS.selected_columns) - 1
"""Where a plan row says whether the copy has no status yet (its last column)."""
_FETCH_PLAN = _PLAN_FROM.where(Delivery.id == bindparam("item_id"))
"""What a fetch needs to know before its transaction, read without a lock: the document the item is
about (a 01's subject, first nine columns), its kind, the file to return (a document's or a status
message's, never changed once written), and whether the copy has no status yet (a first fetch)."""
_FETCH_PLANS = _PLAN_FROM.add_columns(Delivery.id).where(Delivery.id.in_(bindparam("item_ids", expanding=True)))
"""``_FETCH_PLAN`` for several items (:meth:`ExchangeService.fetch_many`), each row ending with its item's id."""


class StagedDocument(Protocol):
    """An incoming document received into the blob store's staging (memory or a file), not yet committed."""

    @property
    def source(self) -> Source:
        """What was received, for the edXML reader: its bytes, or the staging file (after ``flush``)."""
        ...

    @property
    def size(self) -> int:
        """Bytes written so far."""
        ...

    def write(self, data: bytes) -> int: ...

    def flush(self) -> None: ...

    def commit(self) -> tuple[str, int]: ...

    def discard(self) -> None: ...


def _refusal() -> AuthenticationFailed:
    """One message for every cause, so a refusal does not tell which part of the credentials was wrong."""
    return AuthenticationFailed(
        "Authentication failed: send your agency code and secret in the AuthHeader (or a WS-Security "
        "UsernameToken). If they are right, ask the gateway operator whether your credential was "
        "rotated or your agency disabled."
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def _xs_datetime(text: str) -> datetime | None:
    """An xs:dateTime as an aware UTC datetime (no zone is read as UTC, as WS-Security requires UTC)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class ExchangeService:
    """The gateway's domain operations, one method per thing an agency can do."""

    def __init__(self, db: Database, blobs: BlobStore, settings: Settings, clock: Clock = utc_now) -> None:
        self.db = db
        self.blobs = blobs
        self.settings = settings
        self.clock = clock
        self.statuses = Statuses(db, blobs, settings, lambda: self.clock())
        self.addressees = AddresseeCache()

    # -- identity ---------------------------------------------------------------------------

    def authenticate(
        self, code: str | None, secret: str | None, *, nonce: str | None = None, created: str | None = None
    ) -> Caller:
        """The agency whose live credential matches, or AuthenticationFailed (one message for all causes).

        ``created`` and ``nonce`` come from a WS-Security UsernameToken: a token whose Created is more
        than ``wsse_window_seconds`` from now (either way) is refused, and so is a nonce this agency
        already used within that window, on any worker or node (the wsse_nonces table). Both are
        checked only after the secret, so strangers cannot fill the nonce table.
        """
        if not code or not secret:
            raise _refusal()
        now = self.clock()
        caller: Caller | None = None
        rows = self.db.read_rows(_LIVE_CREDENTIALS, {"code": code, "now": now})
        for agency_id, agency_code, name, require_signature, secret_hash, waiting, changed in rows:
            if secret_matches(secret, secret_hash):
                caller = Caller(
                    agency_id,
                    agency_code,
                    name,
                    bool(require_signature),
                    saw_waiting=bool(waiting),
                    agencies_changed=changed,
                )
                break
        if caller is None:
            raise _refusal()
        if created is not None or nonce is not None:
            self._check_token_freshness(caller, nonce, created, now)
        return caller

    def _check_token_freshness(self, caller: Caller, nonce: str | None, created: str | None, now: datetime) -> None:
        """Refuse a UsernameToken created outside the window, or whose nonce was already used."""
        window = timedelta(seconds=self.settings.wsse_window_seconds)
        expires = now + window
        if created is not None:
            moment = _xs_datetime(created)
            if moment is None:
                raise AuthenticationFailed(
                    f"Authentication failed: the WS-Security Created '{created[:40]}' is not a date and time "
                    "such as 2026-12-01T08:30:00Z."
                )
            if abs(now - moment) > window:
                raise AuthenticationFailed(
                    f"Authentication failed: the WS-Security token was created at {created[:40]}, more than "
                    f"{int(window.total_seconds())} seconds from the gateway's time "
                    f"({now.strftime('%Y-%m-%dT%H:%M:%SZ')}). Send a fresh token, and check that the "
                    "client's clock is right."
                )
            expires = moment + window
        if nonce is not None and not nonces.remember(self.db, caller.agency_id, nonce, expires, now):
            raise AuthenticationFailed(
                "Authentication failed: this WS-Security Nonce was already used; every request needs a new "
                "nonce (a replayed request is refused)."
            )

    def agencies(self, parent_code: str | None = None) -> list[AgencyView]:
        """The directory (optionally one agency's direct children), ordered by level, then code.

        In a network of gateways each entry names its home instance (this one's id when served here),
        so an agency's software can see the whole country and where each agency is served.
        """
        here = self.settings.instance_id
        with self.db.transaction(readonly=True) as session:
            query = select(Agency).order_by(Agency.level, Agency.code)
            if parent_code:
                query = query.where(Agency.parent_code == parent_code)
            return [
                AgencyView(a.code, a.name, a.level, a.parent_code, a.active, a.home_instance or here)
                for a in session.scalars(query)
            ]

    # -- sending ----------------------------------------------------------------------------

    def begin_staging(self) -> StagedDocument:
        """A place to write an incoming document before it is validated (a blob not yet committed)."""
        return self.blobs.stage()

    def send_document(self, caller: Caller, staged: StagedDocument) -> SendReceipt:
        """Validate the staged edXML file, store it once, and queue it for every addressee.

        The staged bytes (in memory, or a staging file when large) become the stored blob. Resending the same bytes
        under the same (sender, DocumentId) returns the first receipt and stores nothing new; other
        bytes under a DocumentId already used are refused (DocumentIdConflict), since answering
        "duplicate" would silently drop the new document and any recipient it adds. Whether the
        DocumentId was used is read with the addressees; when those come from this worker's copy
        (no read), the unique constraint tells, after the staged document was stored: refused bytes
        then leave an unreferenced blob, which ``edxml-gateway blobs gc`` removes.
        """
        message = read_document(staged.source)
        if message.sender.organ_id != caller.code:
            raise SenderMismatch(
                f"The document's From/OrganId is '{message.sender.organ_id}' but you are authenticated as "
                f"'{caller.code}'. An agency can only send documents as itself."
            )
        edxml_id = message.document_id or default_document_id(message)
        codes = [o.organ_id for o in message.recipients]
        # Addressees this worker already read under the directory's current version need no read;
        # a DocumentId already used is then found by the unique constraint (IntegrityError below).
        recipients = self.addressees.lookup(caller.agencies_changed, codes)
        if recipients is None:
            sent_by = {"sender_id": caller.agency_id, "edxml_id": edxml_id}
            addressees = self.db.read_rows(_ADDRESSEES, {"codes": codes, **sent_by})
            if addressees:
                already_sent = addressees[0][3] is not None
            else:
                already_sent = bool(self.db.read_rows(_SENT_DOCUMENT_ID, sent_by))
            if already_sent:
                receipt = self._resend(caller, edxml_id, staged, None)
                if receipt is not None:
                    return receipt
            recipients = _active_recipients(codes, addressees)
            self.addressees.remember(caller.agencies_changed, recipients)
        signer = self._check_signature(caller, message.signed, staged.source)
        original_id = self._superseded_document(caller, message)
        sha256, size = staged.commit()
        try:
            return self._store_document(caller, message, edxml_id, sha256, size, recipients, original_id, signer)
        except IntegrityError:
            # A send with the same (sender, DocumentId) committed first: a concurrent one, or an
            # earlier one when the addressees came from this worker's copy. The staged document
            # is already stored under its sha256: with the same bytes it is that document's blob;
            # with other bytes it stays unreferenced, like the blob of a send cut short by a crash.
            receipt = self._resend(caller, edxml_id, staged, sha256)
            if receipt is None:
                raise
            return receipt

    def _resend(
        self, caller: Caller, edxml_id: str, staged: StagedDocument, staged_sha256: str | None
    ) -> SendReceipt | None:
        """The first receipt for a resend of the same bytes (None if the caller never sent ``edxml_id``).

        Other bytes under a DocumentId already used are refused (DocumentIdConflict). ``staged_sha256``
        is the staged document's hash when it is already known (computed from it otherwise).
        """
        with self.db.reading() as connection:
            sent = connection.execute(_SENT_DOCUMENT, {"sender_id": caller.agency_id, "edxml_id": edxml_id}).first()
            if sent is None:
                return None
            _refuse_other_content(sent, edxml_id, staged_sha256 or _staged_sha256(staged.source), staged)
            return _receipt_of(connection, sent, edxml_id)

    def _check_signature(self, caller: Caller, signed: bool, staged: Source) -> str | None:
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

    def _superseded_document(self, caller: Caller, message: DocumentMessage) -> str | None:
        """For recall/update/replace (BussinessDocType 1/2/3): the id of the caller's earlier document it refers to."""
        business = message.business
        if business.doc_type == 0:
            return None
        target_ids = [i for i in (business.document_id, *(r.document_id for r in message.response_for)) if i]
        target_ids += list(business.replaced_document_ids)
        for target in target_ids:
            rows = self.db.read_rows(_SENT_DOCUMENT_ID, {"sender_id": caller.agency_id, "edxml_id": target})
            if rows:
                return str(rows[0][0])
        action = {1: "recall", 2: "update", 3: "replace"}.get(business.doc_type, "refer to")
        shown = ", ".join(target_ids) or "(none given)"
        raise NotFound(
            f"This document is sent to {action} an earlier document, but no document you sent through this "
            f"gateway has DocumentId {shown}. Put the original DocumentId in Bussiness/DocumentId or ResponseFor."
        )

    def _store_document(
        self,
        caller: Caller,
        message: DocumentMessage,
        edxml_id: str,
        sha256: str,
        size: int,
        recipients: Sequence[Addressee],
        original_id: str | None,
        signer: str | None,
    ) -> SendReceipt:
        """Write the document's rows, its local recipients' queue items and its audit entry, in one transaction.

        The common send (no earlier document to take back, every recipient served here) writes
        nothing else: its writes go as one statement on PostgreSQL (``audit.write_alone``).
        """
        now = self.clock()
        document_id = str(uuid.uuid4())
        row = document_row(
            message,
            document_id=document_id,
            sender_id=caller.agency_id,
            edxml_id=edxml_id,
            sha256=sha256,
            size=size,
            signer=signer,
            now=now,
            supersedes_id=original_id,
        )
        local = federation.served_here(self.settings, recipients)
        codes = tuple(code for _, code, _ in recipients)
        detail = {
            "edxml_document_id": edxml_id,
            "sha256": sha256,
            "size": size,
            "recipients": list(codes),
            "business_type": message.business.doc_type,
            "supersedes": original_id,
            "signer": signer,
        }
        inserts = [
            (_INSERT_DOCUMENT, [row]),
            (_INSERT_RECIPIENTS, [{"document_id": document_id, "agency_id": a} for a, _, _ in recipients]),
            (queue.INSERT_ITEMS, queue.item_rows(local, queue.KIND_DOCUMENT, document_id, now)),
        ]
        record = audit.Record(caller.code, "send", document_id, detail)
        receipt = SendReceipt(document_id, edxml_id, codes, duplicate=False, signer=signer)
        if original_id is None and len(local) == len(recipients):
            audit.write_alone(self.db, inserts, record, now)
            return receipt
        with self.db.transaction() as session:
            original = session.get_one(Document, original_id) if original_id else None
            audit.insert_then_append(self.db, session, inserts, [record], now)
            if len(local) != len(recipients):
                # Federation hook: recipients served by another instance go to the relay outbox.
                federation.route_document(
                    session, self.settings, document_id, caller.code, recipients, sha256, size, now
                )
            if original is not None:
                if message.business.doc_type == 1:
                    original.recalled_at = now
                self.statuses.take_back(
                    session, original, {agency_id for agency_id, _, _ in recipients}, now, notice=None
                )
        return receipt

    # -- receiving --------------------------------------------------------------------------

    def pending(self, caller: Caller, limit: int | None = None, *, fresh_caller: bool = False) -> list[PendingItem]:
        """Lease up to ``limit`` waiting items; they stay hidden from other pulls until the lease ends.

        Most polls find nothing, so a poll first asks, without any lock, whether anything is
        available; only then does it take the write transaction that leases. With ``fresh_caller``
        (``caller`` was authenticated by this very request) the answer authentication saw is used
        instead, and an empty poll runs no statement of its own. Leasing and loading the listed
        items cost two statements whatever their number.
        """
        cap = self.settings.max_pending_items
        limit = cap if not limit or limit <= 0 else min(limit, cap)
        if fresh_caller and caller.saw_waiting is False:
            return []
        now = self.clock()
        with self.db.reading() as connection:
            if not queue.has_available(connection, caller.agency_id, now):
                return []
        with self.db.transaction() as session:
            leased = queue.lease_pending(session, caller.agency_id, limit, self.settings.lease_seconds, now)
            if not leased:
                return []
            rows = session.execute(_PENDING_VIEWS, {"ids": [d.id for d in leased]})
            views = {row.item_id: row for row in rows}
        return [self._pending_view(views[d.id]) for d in leased]

    def _pending_view(self, row: Row[*tuple[Any, ...]]) -> PendingItem:
        size = row.size
        if row.event_sha256 is not None:
            # Status messages are sized when stored (migration 0003); older rows may lack it.
            size = row.event_size if row.event_size is not None else self.blobs.size(row.event_sha256)
        return PendingItem(
            item_id=row.item_id,
            kind=row.kind,
            document_id=row.document_id,
            edxml_document_id=row.edxml_document_id,
            sender_code=row.sender_code,
            sender_name=row.sender_name,
            code=f"{row.code_number}/{row.code_notation}",
            subject=row.subject,
            promulgation_date=row.promulgation_date,
            due_date=row.due_date,
            priority=row.priority,
            business_type=row.business_type,
            status_code=row.status_code,
            status_from=row.status_from,
            size=size,
            queued_at=row.created_at,
            lease_expires_at=row.lease_until,
            attempts=row.attempts,
            signer=row.signer,
        )

    def fetch(self, caller: Caller, item_id: str) -> FetchedItem:
        """Locate an item's edXML file; the first fetch of a document records 01 (arrived).

        A lock-free read finds the item's file and whether the copy still has no status
        (``_FETCH_PLAN``); inside the transaction one UPDATE marks and reads the item, which decides.
        The first fetch of a document adds the 01: a conditional UPDATE of the copy, in the item's
        round trip, and the status message's rows. The 01's queue item and audit entry go out with
        the fetch's own audit entry (:class:`audit.Writes`). On PostgreSQL a first fetch is thus
        five round trips: the read, BEGIN with both UPDATEs, the event, the rest, COMMIT.
        """
        found = self.db.read_rows(_FETCH_PLAN, {"item_id": item_id, "agency_id": caller.agency_id})
        if not found:
            raise _not_addressed(caller, item_id)
        return self._fetch_planned(caller, [(item_id, found[0])])[0]

    def fetch_many(self, caller: Caller, item_ids: Sequence[str]) -> list[FetchedItem]:
        """Fetch several of the caller's items in one transaction, as :meth:`fetch` fetches one.

        All or nothing, as :meth:`acknowledge_many`: an id that is not the caller's item (or was
        withdrawn) is refused naming the first such id, and nothing is fetched. The items are taken
        in the order asked (an id asked twice, once), at most ``max_pending_items`` of them, while
        their files together stay within ``max_fetch_bytes`` (the first always); the rest are left
        pending, unfetched and unchecked, for the next call. One lock-free read plans them all, and
        one transaction records every fetch and 01 with one audit append: the per-call and
        per-transaction costs of :meth:`fetch` are paid once (issue 13).
        """
        wanted = list(dict.fromkeys(item_ids))[: self.settings.max_pending_items]
        if not wanted:
            return []
        plans = {
            row[-1]: row[:-1]
            for row in self.db.read_rows(_FETCH_PLANS, {"item_ids": wanted, "agency_id": caller.agency_id})
        }
        chosen: list[tuple[str, Sequence[Any]]] = []
        total = 0
        for item_id in wanted:
            plan = plans.get(item_id)
            if plan is None:
                raise _not_addressed(caller, item_id)
            total += _planned_size(plan)
            if chosen and total > self.settings.max_fetch_bytes:
                break
            chosen.append((item_id, plan))
        return self._fetch_planned(caller, chosen)

    def _fetch_planned(self, caller: Caller, planned: Sequence[tuple[str, Sequence[Any]]]) -> list[FetchedItem]:
        """Record the fetch of each planned item, its 01 where it is the copy's first, in one transaction."""
        now = self.clock()
        stored = iter(self._store_arrivals(caller, [plan for _, plan in planned if plan[_UNARRIVED]], now))
        arrivals = [next(stored) if plan[_UNARRIVED] else None for _, plan in planned]
        writes = audit.Writes()
        fetched: list[FetchedItem] = []
        with self.db.transaction() as session:
            for (item_id, plan), arrival in zip(planned, arrivals, strict=True):
                fetched.append(self._fetch_one(session, caller, item_id, plan, arrival, writes, now))
            writes.write(self.db, session, now)
        return fetched

    def _fetch_one(
        self,
        session: Session,
        caller: Caller,
        item_id: str,
        plan: Sequence[Any],
        arrival: tuple[str, int] | None,
        writes: audit.Writes,
        now: datetime,
    ) -> FetchedItem:
        kind, document_sha256, document_size, event_sha256, event_size, unarrived = plan[9:]
        # The copy's 01 is marked in the item's round trip; the item then decides whether it stands.
        arrived = {"copy_of": plan[0], "held_by": caller.agency_id, "arrived_at": now}
        along = [(_ARRIVED, arrived)] if unarrived else []
        item, others = queue.fetch_item(self.db, session, item_id, caller.agency_id, now, along)
        if item is None:
            raise _not_addressed(caller, item_id)
        if item.state == queue.WITHDRAWN:
            raise _withdrawn(item_id)
        if kind == queue.KIND_DOCUMENT:
            sha256, size = document_sha256, document_size
            if unarrived and others[0]:
                me = Party.of(caller)
                self.statuses.record(
                    session,
                    Subject.of(plan),
                    about=me,
                    reporter=me,
                    code=Status.ARRIVED,
                    description=None,
                    staff=None,
                    now=now,
                    stored=arrival,
                    writes=writes,
                )
        else:
            sha256 = event_sha256
            size = event_size if event_size is not None else self.blobs.size(sha256)
        writes.records.append(
            audit.Record(
                caller.code, "fetch", item.document_id, {"item_id": item.id, "kind": item.kind, "sha256": sha256}
            )
        )
        return FetchedItem(item.id, item.kind, item.document_id, sha256, size, self.blobs.path(sha256))

    def _store_arrivals(self, caller: Caller, plans: Sequence[Sequence[Any]], now: datetime) -> list[tuple[str, int]]:
        """Store the 01s the first fetches of ``plans`` will record, before the fetch's transaction.

        Storing a file fsyncs it and its directory; inside the transaction that would hold SQLite's
        write lock, and every writer of every worker would wait (the receive benchmark's workers
        spent 64% of their time waiting in BEGIN IMMEDIATE, issue 13). The files are stored together
        (:meth:`BlobStore.put_many`: one hand-off off the worker for a batch). ``plans`` were read
        without a lock: if another fetch records a 01 first, its file stays unreferenced and
        ``blobs gc`` takes it.
        """
        me = Party.of(caller)
        files = [
            self.statuses.message_file(
                Subject.of(plan), reporter=me, code=Status.ARRIVED, description=None, staff=None, now=now
            )
            for plan in plans
        ]
        return self.blobs.put_many(files)

    def acknowledge(self, caller: Caller, item_id: str) -> None:
        """Take an item off the caller's pending list for good (idempotent)."""
        self.acknowledge_many(caller, [item_id])

    def acknowledge_many(self, caller: Caller, item_ids: Sequence[str]) -> int:
        """Take several of the caller's items off its pending list at once; return how many were pending.

        All or nothing: an id that is not the caller's item (or was withdrawn) is refused with
        NotFound naming the first such id, and nothing is acknowledged. Acknowledging an item
        again changes nothing. One UPDATE for all the items when each is the caller's and pending.
        """
        wanted = list(dict.fromkeys(item_ids))
        if not wanted:
            return 0
        now = self.clock()
        with self.db.transaction() as session:
            acked = queue.acknowledge_items(session, wanted, caller.agency_id, now)
            if len(acked) < len(wanted):
                done = {item.id for item in acked}
                known = queue.states(session, [i for i in wanted if i not in done], caller.agency_id)
                for item_id in wanted:
                    if item_id in done:
                        continue
                    state = known.get(item_id)
                    if state is None:
                        raise _not_addressed(caller, item_id)
                    if state == queue.WITHDRAWN:
                        raise _withdrawn(item_id)
            audit.insert_then_append(
                self.db,
                session,
                [],
                [
                    audit.Record(caller.code, "ack", item.document_id, {"item_id": item.id, "kind": item.kind})
                    for item in acked
                ],
                now,
            )
            return len(acked)

    # -- status (gateway.exchange.statuses) --------------------------------------------------

    def update_status(
        self,
        caller: Caller,
        document_id: str,
        code: str,
        description: str | None = None,
        staff: StaffInfo | None = None,
    ) -> StatusReceipt:
        """Record a status the caller reports about a document (see :meth:`Statuses.update`)."""
        return self.statuses.update(caller, document_id, code, description, staff)

    def history(self, caller: Caller, document_id: str) -> list[StatusEntry]:
        """Every status of a document: all recipients for its sender, its own copy for a recipient."""
        return self.statuses.history(caller, document_id)


def _staged_sha256(source: Source) -> str:
    """The sha256 of a staged document. Only a resend pays for this: a new document's hash is computed
    when it is stored."""
    if not isinstance(source, Path):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _refuse_other_content(sent: _SentDocument, edxml_id: str, staged_sha256: str, staged: StagedDocument) -> None:
    """Let a resend of the same bytes through; refuse other bytes under a DocumentId already used.

    Either way the staged document is not stored again (``discard`` leaves an already committed blob alone).
    """
    document_id, _signer, stored_sha256, sent_at = sent
    staged.discard()
    if staged_sha256 == stored_sha256:
        return
    when = sent_at.astimezone(VIETNAM_TIME).strftime("%d/%m/%Y %H:%M:%S")
    raise DocumentIdConflict(
        f"DocumentId '{edxml_id}' was already used by your agency for another document: gateway id "
        f"{document_id}, sent {when} Vietnam time (UTC+7), with different content. Nothing was sent. Give "
        "this document its own DocumentId; to update or replace the earlier one, send it with "
        "Bussiness/BussinessDocType 2 or 3 and the earlier DocumentId in Bussiness/DocumentId."
    )


def _receipt_of(connection: Connection, sent: _SentDocument, edxml_id: str) -> SendReceipt:
    """The first receipt again, for a resend of the same document."""
    document_id, signer, _sha256, _sent_at = sent
    codes = connection.scalars(
        select(Agency.code)
        .join(Recipient, Recipient.agency_id == Agency.id)
        .where(Recipient.document_id == document_id)
        .order_by(Recipient.id)
    )
    return SendReceipt(document_id, edxml_id, tuple(codes), duplicate=True, signer=signer)


def document_row(
    message: DocumentMessage,
    *,
    document_id: str,
    sender_id: int,
    edxml_id: str,
    sha256: str,
    size: int,
    signer: str | None,
    now: datetime,
    supersedes_id: str | None = None,
    origin: tuple[str, str] | None = None,
) -> dict[str, object]:
    """The ``documents`` row of an accepted document (sent here, or relayed from ``origin``)."""
    return {
        "id": document_id,
        "sender_id": sender_id,
        "edxml_document_id": edxml_id,
        "code_number": message.code_number,
        "code_notation": message.code_notation,
        "subject": message.subject,
        "type_name": message.type_name,
        "promulgation_date": message.promulgation_date,
        "due_date": message.due_date,
        "priority": message.priority,
        "business_type": message.business.doc_type,
        "supersedes_id": supersedes_id,
        "blob_sha256": sha256,
        "size": size,
        "attachment_count": len(message.attachments),
        "signer": signer,
        "created_at": now,
        "origin_instance": origin[0] if origin else None,
        "origin_document_id": origin[1] if origin else None,
    }


def _active_recipients(codes: Sequence[str], addressees: Sequence[tuple[Any, ...]]) -> list[Addressee]:
    """``(agency id, code, home instance)`` of each addressee, in the document's order.

    UnknownRecipient for any code that is not an active agency (rows of ``_ADDRESSEES``). Agencies
    served by another instance are addressees too.
    """
    active = {code: (agency_id, home) for code, agency_id, home, _sent in addressees}
    missing = [c for c in codes if c not in active]
    if missing:
        raise UnknownRecipient(
            f"These To/OrganId codes are not active agencies of the exchange: {', '.join(missing)}. "
            "Check the codes with getAgencies; nothing was sent."
        )
    return [(active[c][0], c, active[c][1]) for c in codes]


def _planned_size(plan: Sequence[Any]) -> int:
    """The size of the file a fetch plan returns (a status event of an old version may not know it: small)."""
    kind, _, document_size, _, event_size = plan[9:14]
    return int((document_size if kind == queue.KIND_DOCUMENT else event_size) or 0)


def _not_addressed(caller: Caller, item_id: str) -> NotFound:
    return NotFound(f"No item '{item_id}' is addressed to {caller.code}. Use an itemId from getPendingDocuments.")


def _withdrawn(item_id: str) -> NotFound:
    return NotFound(f"Item '{item_id}' was withdrawn by its sender (recalled or replaced) before you fetched it.")
