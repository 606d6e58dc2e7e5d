"""Taking custody of consignments from other instances, and serving the ``/relay`` operations.

Both directions end in :meth:`FederationService.receive`: the national instance receives what a
province pushes, a province receives what it pulled from the national instance. Receiving is
exactly-once per instance: the payload blob is fsynced first, then ONE transaction records the
inbound consignment id (unique), the document or status, its local deliveries and its onward
consignments. A repeat of the same consignment id answers "duplicate" and changes nothing, so a
sender may retry after any failure (docs/federation.md, "Crash points").
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.edxml import read_document, read_status
from gateway.edxml.model import DocumentMessage, StaffInfo
from gateway.edxml.signature import verify_signature
from gateway.edxml.writer import default_document_id
from gateway.errors import (
    AuthenticationFailed,
    InvalidEdxml,
    MalformedRequest,
    NotFound,
    RelayLoop,
    SenderMismatch,
    UnknownRecipient,
)
from gateway.exchange import workflow
from gateway.exchange.service import ExchangeService, StagedDocument, document_row
from gateway.federation import directory_sync, hooks, outbox, peers, routing
from gateway.federation.model import (
    DELIVERY_REPORT,
    KIND_DOCUMENT,
    KIND_STATUS,
    KINDS,
    MAX_HOPS,
    ConsignmentHeader,
    DirectoryEntry,
)
from gateway.store import audit, queue
from gateway.store.blobs import BlobStore, StagedBlob
from gateway.store.database import Database
from gateway.store.models import Agency, Document, InboundConsignment, Recipient, StatusEvent, table_of

PULL_CAP = 100
RELAY_LEASE_SECONDS = 30
"""How long a pulled consignment stays hidden from the next pull. Short on purpose: a relay killed
between pull and acknowledge gets it again soon, and a repeat costs only a duplicate answer."""


@dataclass(frozen=True)
class Received:
    """The answer to a push (or the outcome of storing a pulled consignment)."""

    consignment_id: str
    duplicate: bool
    local_document_id: str | None


class FederationService:
    """The relay's domain operations at one instance."""

    def __init__(self, exchange: ExchangeService) -> None:
        self.exchange = exchange
        self.db: Database = exchange.db
        self.blobs: BlobStore = exchange.blobs
        self.settings: Settings = exchange.settings
        self.clock = exchange.clock
        self.blobs.put_bytes(b"")  # the payload of relayed delivery reports (reports.py)

    # -- identity -----------------------------------------------------------------------------

    def authenticate_peer(self, instance_id: str | None, secret: str | None) -> str:
        """The calling peer's instance id, or AuthenticationFailed (one message for all causes)."""
        with self.db.transaction(readonly=True) as session:
            peer = peers.authenticate(session, instance_id, secret)
        if peer is None:
            raise AuthenticationFailed(
                "Peer authentication failed: send this instance's id and the secret `edxml-gateway peers add` "
                "printed at the national gateway in the PeerHeader."
            )
        return peer

    def begin_staging(self) -> StagedBlob:
        return self.blobs.stage()

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, from_peer: str, header: ConsignmentHeader, staged: StagedDocument) -> Received:
        """Verify, store durably and route one consignment; a repeated consignment id is a no-op."""
        self._check_header(header)
        with self.db.transaction(readonly=True) as session:
            seen = session.get(InboundConsignment, header.consignment_id)
            if seen is not None:
                staged.discard()
                return Received(header.consignment_id, True, seen.local_document_id)
        staged.flush()
        if staged.size != header.payload_size:
            raise InvalidEdxml(
                f"Consignment {header.consignment_id}: the payload has {staged.size} bytes, the header says "
                f"{header.payload_size}; it was damaged on the way. Nothing was stored; send it again."
            )
        message = read_document(staged.source) if header.kind == KIND_DOCUMENT else None
        if header.kind != KIND_DOCUMENT and header.status_code != DELIVERY_REPORT:
            read_status(staged.source)
        if message is not None and message.sender.organ_id != header.sender_code:
            raise SenderMismatch(
                f"Consignment {header.consignment_id}: the document's From/OrganId is {message.sender.organ_id}, "
                f"the header's senderCode {header.sender_code}."
            )
        if message is not None:
            addressed = {o.organ_id for o in message.recipients}
            outside = [c for c in header.recipients if c not in addressed]
            if outside:
                raise InvalidEdxml(
                    f"Consignment {header.consignment_id} lists recipients the document does not address: "
                    f"{', '.join(outside)}."
                )
        signer = None
        if message is not None and message.signed and self.settings.trusted_certs is not None:
            # Verified again at every hop that can: the bytes are the sender's, untouched.
            signer = verify_signature(staged.source, self.settings.trusted_certs)
        sha256, _ = staged.commit()
        if sha256 != header.payload_sha256:
            raise InvalidEdxml(
                f"Consignment {header.consignment_id}: the payload's sha256 is {sha256}, the header says "
                f"{header.payload_sha256}; it was damaged on the way. Send it again."
            )
        now = self.clock()
        try:
            with self.db.transaction() as session:
                session.add(
                    InboundConsignment(
                        consignment_id=header.consignment_id, from_peer=from_peer, kind=header.kind, received_at=now
                    )
                )
                session.flush()
                if header.kind == KIND_DOCUMENT:
                    assert message is not None
                    local_id = self._take_document(session, header, message, sha256, now, signer)
                elif header.kind == KIND_STATUS:
                    local_id = self._take_status(session, header, sha256, now)
                else:
                    local_id = self._take_recall(session, header, sha256, now)
                inbound = session.get_one(InboundConsignment, header.consignment_id)
                inbound.local_document_id = local_id
                audit.append(
                    session,
                    f"peer:{from_peer}",
                    "relay_in",
                    local_id,
                    {
                        "consignment": header.consignment_id,
                        "kind": header.kind,
                        "from": from_peer,
                        "origin": [header.origin_instance, header.origin_document_id],
                        "sha256": sha256,
                        "recipients": list(header.recipients),
                        "status": header.status_code,
                    },
                    now,
                )
                return Received(header.consignment_id, False, local_id)
        except IntegrityError:
            with self.db.transaction(readonly=True) as session:
                seen = session.get(InboundConsignment, header.consignment_id)
            if seen is None:
                raise
            return Received(header.consignment_id, True, seen.local_document_id)

    def _check_header(self, header: ConsignmentHeader) -> None:
        if header.kind not in KINDS:
            raise MalformedRequest(f"Consignment kind '{header.kind}' is not one of {', '.join(KINDS)}.")
        try:
            uuid.UUID(header.consignment_id)
        except ValueError:
            raise MalformedRequest(f"consignmentId '{header.consignment_id}' is not a UUID.") from None
        if self.settings.instance_id in header.path or header.hop_count > MAX_HOPS:
            raise RelayLoop(
                f"Consignment {header.consignment_id} already passed {self.settings.instance_id} or exceeded "
                f"{MAX_HOPS} hops (path {' > '.join(header.path)}); it is refused to stop a routing loop. "
                "Check the home instances of its recipients in both directories."
            )
        if header.kind != KIND_DOCUMENT and not header.status_code:
            raise MalformedRequest(f"A {header.kind} consignment needs its statusCode.")

    def _agencies(self, session: Session, codes: Sequence[str]) -> dict[str, tuple[int, str | None]]:
        rows = session.execute(select(Agency.code, Agency.id, Agency.home_instance).where(Agency.code.in_(list(codes))))
        return {code: (agency_id, home) for code, agency_id, home in rows}

    def _take_document(
        self,
        session: Session,
        header: ConsignmentHeader,
        message: DocumentMessage,
        sha256: str,
        now: datetime,
        signer: str | None,
    ) -> str:
        known = self._agencies(session, [header.sender_code, *header.recipients])
        if header.sender_code not in known:
            raise UnknownRecipient(
                f"The sender {header.sender_code} is not in this instance's directory yet; it will be after the "
                "next directory sync. Send the consignment again later."
            )
        missing = [c for c in header.recipients if c not in known]
        if missing:
            raise UnknownRecipient(f"Recipients {', '.join(missing)} are not in this instance's directory.")
        sender_id = known[header.sender_code][0]
        edxml_id = message.document_id or default_document_id(message)
        document = session.scalar(
            select(Document).where(Document.sender_id == sender_id, Document.edxml_document_id == edxml_id)
        )
        recipients = [(known[c][0], c, known[c][1]) for c in header.recipients]
        if document is None:
            document_id = str(uuid.uuid4())
            session.execute(
                insert(table_of(Document)),
                document_row(
                    message,
                    document_id=document_id,
                    sender_id=sender_id,
                    edxml_id=edxml_id,
                    sha256=sha256,
                    size=header.payload_size,
                    signer=signer,
                    now=now,
                    origin=(header.origin_instance, header.origin_document_id),
                ),
            )
            new = recipients
        else:
            document_id = document.id
            present = set(session.scalars(select(Recipient.agency_id).where(Recipient.document_id == document_id)))
            new = [r for r in recipients if r[0] not in present]
        if new:
            session.execute(
                insert(table_of(Recipient)), [{"document_id": document_id, "agency_id": a} for a, _, _ in new]
            )
        hooks.route_document(
            session,
            self.settings,
            document_id,
            header.sender_code,
            new,
            sha256,
            header.payload_size,
            now,
            origin=(header.origin_instance, header.origin_document_id),
            path_so_far=header.path,
        )
        local = hooks.served_here(self.settings, new)
        if local:
            queue.enqueue_many(session, local, queue.KIND_DOCUMENT, document_id, now)
        if message.business.doc_type and new:
            self._supersede(session, sender_id, message, document_id, {agency_id for agency_id, _, _ in new}, now)
        return document_id

    def _supersede(
        self,
        session: Session,
        sender_id: int,
        message: DocumentMessage,
        document_id: str,
        recipients: set[int],
        now: datetime,
    ) -> None:
        """BussinessDocType 1/2/3 relayed here: take back the original from this instance's recipients,
        and from consignments of it that never left here (the others go on with the new document)."""
        business = message.business
        targets = [i for i in (business.document_id, *(r.document_id for r in message.response_for)) if i]
        targets += list(business.replaced_document_ids)
        for target in targets:
            original = session.scalar(
                select(Document).where(Document.sender_id == sender_id, Document.edxml_document_id == target)
            )
            if original is not None and original.id != document_id:
                session.get_one(Document, document_id).supersedes_id = original.id
                if business.doc_type == 1:
                    original.recalled_at = now
                self.exchange.statuses.take_back(session, original, recipients, now, notice=None, notice_forwarded=True)
                return

    def _document_by_origin(self, session: Session, header: ConsignmentHeader) -> Document:
        if header.origin_instance == self.settings.instance_id:
            document = session.get(Document, header.origin_document_id)
        else:
            document = session.scalar(
                select(Document).where(
                    Document.origin_instance == header.origin_instance,
                    Document.origin_document_id == header.origin_document_id,
                )
            )
        if document is None:
            raise NotFound(
                f"No document {header.origin_document_id} of {header.origin_instance} passed this instance; "
                f"the {header.kind} consignment {header.consignment_id} cannot be applied here."
            )
        return document

    def _forward(
        self,
        session: Session,
        header: ConsignmentHeader,
        hop: str,
        codes: Sequence[str],
        document_id: str,
        sha256: str,
        now: datetime,
    ) -> None:
        outbox.add(
            session,
            self.settings,
            next_hop=hop,
            kind=header.kind,
            document_id=document_id,
            origin_instance=header.origin_instance,
            origin_document_id=header.origin_document_id,
            sender_code=header.sender_code,
            recipients=codes,
            sha256=sha256,
            size=header.payload_size,
            path_so_far=header.path,
            now=now,
            status={
                "status_code": header.status_code,
                "recipient_code": header.recipient_code,
                "reporter_code": header.reporter_code,
                "reported_at": header.reported_at,
                "description": header.description,
                "staff_department": header.staff_department,
                "staff_name": header.staff_name,
            },
        )

    def _take_status(self, session: Session, header: ConsignmentHeader, sha256: str, now: datetime) -> str:
        """A recipient's status coming back: recorded where the sender is served, forwarded otherwise."""
        document = self._document_by_origin(session, header)
        sender = document.sender
        hop = routing.next_hop(session, self.settings, sender.home_instance)
        if hop is not None:
            self._forward(session, header, hop, [sender.code], document.id, sha256, now)
            return document.id
        known = self._agencies(session, [c for c in (header.recipient_code, header.reporter_code) if c])
        if header.recipient_code not in known or header.reporter_code not in known:
            raise UnknownRecipient(
                f"The status names agencies this instance does not know ({header.recipient_code}, "
                f"{header.reporter_code})."
            )
        recipient_id = known[header.recipient_code or ""][0]
        recipient = session.scalar(
            select(Recipient)
            .where(Recipient.document_id == document.id, Recipient.agency_id == recipient_id)
            .with_for_update()
        )
        if recipient is None:
            raise NotFound(f"{header.recipient_code} is not a recipient of document {document.id}.")
        code = header.status_code or ""
        if code == DELIVERY_REPORT:
            report = StatusEvent(
                document_id=document.id,
                recipient_agency_id=recipient_id,
                reporter_agency_id=recipient_id,
                code=code,
                description=header.description,
                staff_department=header.staff_department,
                reported_at=header.reported_at or now,
            )
            session.add(report)
            return document.id
        if code in workflow.PROCESSING_CODES:
            recipient.status = code
            recipient.status_at = header.reported_at or now
        elif code in workflow.RECALL_ANSWERS:
            recipient.recall_state = code
        event = StatusEvent(
            document_id=document.id,
            recipient_agency_id=recipient_id,
            reporter_agency_id=known[header.reporter_code or ""][0],
            code=code,
            description=header.description,
            staff_department=header.staff_department,
            staff_name=header.staff_name,
            reported_at=header.reported_at or now,
            blob_sha256=sha256,
            blob_size=header.payload_size,
        )
        session.add(event)
        session.flush()
        queue.enqueue(session, document.sender_id, queue.KIND_STATUS, document.id, status_event_id=event.id, now=now)
        return document.id

    def _take_recall(self, session: Session, header: ConsignmentHeader, sha256: str, now: datetime) -> str:
        """A sender's 13 going forward: applied to this instance's recipients and to copies that never
        left it (answered 15 at once), forwarded for the others."""
        document = self._document_by_origin(session, header)
        known = self._agencies(session, header.recipients)
        concerned: set[int] = set()
        remote: dict[str, list[str]] = {}
        for code in header.recipients:
            if code not in known:
                continue
            agency_id, home = known[code]
            concerned.add(agency_id)
            hop = routing.next_hop(session, self.settings, home)
            if hop is not None:
                remote.setdefault(hop, []).append(code)
        if not concerned:
            return document.id
        staff = (
            StaffInfo(department=header.staff_department, staff=header.staff_name)
            if (header.staff_department or header.staff_name)
            else None
        )
        document.recalled_at = document.recalled_at or now
        taken = self.exchange.statuses.take_back(
            session, document, concerned, now, notice=(header.description, staff), notice_forwarded=True
        )
        for hop, codes in remote.items():
            onward = [code for code in codes if code not in taken.withdrawn_in_transit]
            if onward:
                self._forward(session, header, hop, onward, document.id, sha256, now)
        return document.id

    # -- serving the next hop's pulls ---------------------------------------------------------

    def pull(self, peer: str, max_items: int | None) -> list[ConsignmentHeader]:
        limit = PULL_CAP if not max_items or max_items <= 0 else min(max_items, PULL_CAP)
        now = self.clock()
        with self.db.transaction() as session:
            rows = outbox.lease_for_peer(session, self.settings, peer, limit, RELAY_LEASE_SECONDS, now)
            return [outbox.header(r) for r in rows]

    def fetch(self, peer: str, consignment_id: str) -> tuple[ConsignmentHeader, Path, int]:
        with self.db.transaction(readonly=True) as session:
            row = outbox.for_peer(session, peer, consignment_id)
            if row is None or row.state == outbox.FAILED:
                raise NotFound(f"No consignment '{consignment_id}' is waiting for {peer}.")
            return outbox.header(row), self.blobs.path(row.blob_sha256), row.payload_size

    def acknowledge(self, peer: str, consignment_id: str) -> bool:
        now = self.clock()
        with self.db.transaction() as session:
            row = outbox.for_peer(session, peer, consignment_id)
            if row is None:
                raise NotFound(f"No consignment '{consignment_id}' was routed to {peer}.")
            if row.state == outbox.FAILED:
                raise NotFound(f"Consignment '{consignment_id}' failed here and is no longer waiting for {peer}.")
            outbox.delivered(session, row, now)
            return True

    # -- directory ----------------------------------------------------------------------------

    def register_agencies(self, peer: str, entries: Sequence[DirectoryEntry]) -> int:
        with self.db.transaction() as session:
            return directory_sync.register(session, self.settings, peer, entries, self.clock())

    def directory_page(self, since: int) -> tuple[int, list[DirectoryEntry]]:
        with self.db.transaction(readonly=True) as session:
            return directory_sync.page(session, self.settings, since)
