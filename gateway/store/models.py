"""The gateway's tables, as SQLAlchemy 2 typed declarations.

One ``Document`` per accepted edoc (its edXML bytes live in the blob store, named by sha256);
one ``Recipient`` per (document, addressee) carrying the addressee's current processing status;
one ``Delivery`` per item waiting in an agency's pull queue (a document for a recipient, or a
status message for a sender); one ``StatusEvent`` per status ever reported; ``AuditEntry`` rows
form an append-only hash chain.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on every backend.

    PostgreSQL keeps ``timestamptz``; SQLite keeps no zone at all, so values are converted to UTC
    before storing and tagged UTC on the way out. Naive datetimes are refused rather than guessed:
    a naive value is a bug (local time would be silently stored as UTC).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value  # the DateTime impl has already made it a datetime
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base; alembic autogenerate compares against ``Base.metadata``."""


def table_of(model: type[Base]) -> Table:
    """The Core ``Table`` of a mapped class (``__table__`` is typed as a bare ``FromClause``)."""
    return cast(Table, model.__table__)


class Agency(Base):
    """An agency of the directory, identified by its official code (mã định danh)."""

    __tablename__ = "agencies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(35), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    level: Mapped[int] = mapped_column(Integer)
    parent_code: Mapped[str | None] = mapped_column(String(35), index=True)
    email: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    require_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    test_code: Mapped[bool] = mapped_column(Boolean, default=False)
    sandbox: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The gateway's own test agency for certification runs: never counted in reports."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    home_instance: Mapped[str | None] = mapped_column(String(35))
    """The gateway instance that serves the agency; NULL means this one (docs/federation.md)."""
    directory_version: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    """Bumped on every change, so other instances can pull the directory incrementally."""

    credentials: Mapped[list[Credential]] = relationship(back_populates="agency")


class Credential(Base):
    """A secret an agency authenticates with, stored only as a salted hash."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    agency: Mapped[Agency] = relationship(back_populates="credentials")


class Document(Base):
    """An accepted edoc. ``(sender_id, edxml_document_id)`` is unique: a resend is idempotent."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("sender_id", "edxml_document_id", name="uq_documents_sender_docid"),
        Index("ix_documents_origin", "origin_instance", "origin_document_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    """Indexed by ``uq_documents_sender_docid``, whose first column it is (migration 0008)."""
    edxml_document_id: Mapped[str] = mapped_column(String(500))
    code_number: Mapped[str] = mapped_column(String(100))
    code_notation: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text)
    type_name: Mapped[str] = mapped_column(String(200))
    promulgation_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date)
    priority: Mapped[int | None] = mapped_column(Integer)
    business_type: Mapped[int] = mapped_column(Integer, default=0)
    supersedes_id: Mapped[str | None] = mapped_column(ForeignKey("documents.id"), index=True)
    blob_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    attachment_count: Mapped[int] = mapped_column(Integer, default=0)
    signer: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    recalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    origin_instance: Mapped[str | None] = mapped_column(String(35))
    """For a document relayed from another instance: where it was first sent, and its id there."""
    origin_document_id: Mapped[str | None] = mapped_column(String(36))

    sender: Mapped[Agency] = relationship(foreign_keys=[sender_id])
    recipients: Mapped[list[Recipient]] = relationship(back_populates="document", order_by="Recipient.id")


class Recipient(Base):
    """One addressee of a document and where its processing stands (``status`` = last code)."""

    __tablename__ = "recipients"
    __table_args__ = (UniqueConstraint("document_id", "agency_id", name="uq_recipients_doc_agency"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"))
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    status: Mapped[str | None] = mapped_column(String(2))
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    recall_state: Mapped[str | None] = mapped_column(String(2))

    document: Mapped[Document] = relationship(back_populates="recipients")
    agency: Mapped[Agency] = relationship()


class StatusEvent(Base):
    """A status reported about one recipient's copy of a document (01..06, 13, 15, 16)."""

    __tablename__ = "status_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"), index=True)
    recipient_agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    reporter_agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    code: Mapped[str] = mapped_column(String(2))
    description: Mapped[str | None] = mapped_column(Text)
    staff_department: Mapped[str | None] = mapped_column(String(300))
    staff_name: Mapped[str | None] = mapped_column(String(300))
    staff_email: Mapped[str | None] = mapped_column(String(200))
    staff_mobile: Mapped[str | None] = mapped_column(String(50))
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    blob_sha256: Mapped[str | None] = mapped_column(String(64))
    blob_size: Mapped[int | None] = mapped_column(BigInteger)
    """Size of the status message's blob, so a poll lists it without a stat() (migration 0003_exchange)."""

    recipient_agency: Mapped[Agency] = relationship(foreign_keys=[recipient_agency_id])
    reporter_agency: Mapped[Agency] = relationship(foreign_keys=[reporter_agency_id])


class Delivery(Base):
    """An item in an agency's pull queue, leased on pull and gone from the list once acknowledged.

    ``state`` is ``pending`` (listable; leased while ``lease_until`` is in the future),
    ``acked`` or ``withdrawn`` (a recall or replacement took it back before it was fetched).
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_queue", "agency_id", "state", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    kind: Mapped[str] = mapped_column(String(10))
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"), index=True)
    status_event_id: Mapped[int | None] = mapped_column(ForeignKey("status_events.id"))
    state: Mapped[str] = mapped_column(String(10), default="pending")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    agency: Mapped[Agency] = relationship()
    document: Mapped[Document] = relationship()
    status_event: Mapped[StatusEvent | None] = relationship()


class AuditEntry(Base):
    """One append-only audit record; ``hash`` = sha256(prev_hash + canonical JSON of the record)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(35))
    action: Mapped[str] = mapped_column(String(40))
    document_id: Mapped[str | None] = mapped_column(String(36), index=True)
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class WsseNonce(Base):
    """A WS-Security UsernameToken nonce seen from an agency, kept until its token could no longer be fresh.

    The unique constraint is what refuses a replay, across workers and nodes sharing the database;
    ``expires_at`` (indexed) lets expired rows be deleted cheaply. Only a SHA-256 of the nonce is kept.
    """

    __tablename__ = "wsse_nonces"
    __table_args__ = (UniqueConstraint("agency_id", "nonce_sha256", name="uq_wsse_nonces_agency_nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    nonce_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Peer(Base):
    """Another gateway instance this one exchanges consignments with (docs/federation.md).

    At the national instance, one row per province (it authenticates with ``secret_hash``); at a
    provincial instance, at most one row: the upstream, whose id names the next hop.
    """

    __tablename__ = "peers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(35), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class OutboxConsignment(Base):
    """One consignment towards one next hop: a document, a status or a recall, and its custody state.

    ``state`` is ``waiting`` (due at ``next_attempt_at``), ``sending`` (being pushed, or leased by
    the next hop's pull until ``lease_until``), ``delivered`` (the next hop stored it) or ``failed``
    (after ``relay_max_attempts``; an operator may requeue it) or ``withdrawn`` (a recall took every
    recipient out before it ever left). The payload is the blob ``blob_sha256``; the header fields
    travel beside it, never inside it.
    """

    __tablename__ = "relay_outbox"
    __table_args__ = (Index("ix_relay_outbox_hop_state", "next_hop", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    next_hop: Mapped[str] = mapped_column(String(35))
    kind: Mapped[str] = mapped_column(String(10))
    document_id: Mapped[str | None] = mapped_column(ForeignKey("documents.id"), index=True)
    origin_instance: Mapped[str] = mapped_column(String(35))
    origin_document_id: Mapped[str] = mapped_column(String(36))
    sender_code: Mapped[str] = mapped_column(String(35))
    recipients: Mapped[str] = mapped_column(Text)
    blob_sha256: Mapped[str] = mapped_column(String(64))
    payload_size: Mapped[int] = mapped_column(BigInteger)
    hop_count: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    status_code: Mapped[str | None] = mapped_column(String(2))
    recipient_code: Mapped[str | None] = mapped_column(String(35))
    reporter_code: Mapped[str | None] = mapped_column(String(35))
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    description: Mapped[str | None] = mapped_column(Text)
    staff_department: Mapped[str | None] = mapped_column(String(300))
    staff_name: Mapped[str | None] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(10), default="waiting")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InboundConsignment(Base):
    """A consignment this instance has taken custody of; the unique id makes a repeated push a no-op."""

    __tablename__ = "relay_inbound"

    consignment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    from_peer: Mapped[str] = mapped_column(String(35))
    kind: Mapped[str] = mapped_column(String(10))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    local_document_id: Mapped[str | None] = mapped_column(String(36))


class RelayState(Base):
    """Small named counters of the relay: the directory version, how far the directory was pulled."""

    __tablename__ = "relay_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class CertificationRun(Base):
    """One interconnection test of an agency's software, driven by the sandbox agency.

    ``documents`` maps each role of the script (``process``, ``reject``, ``recall``…) to the gateway
    id of the test document the sandbox sent for it (JSON); ``grade`` is set when the run ends.
    """

    __tablename__ = "certification_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    started_by: Mapped[str] = mapped_column(String(60))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    grade: Mapped[str | None] = mapped_column(String(60))
    documents: Mapped[str] = mapped_column(Text, default="{}")

    agency: Mapped[Agency] = relationship()
    checks: Mapped[list[CertificationCheck]] = relationship(order_by="CertificationCheck.id")


class CertificationCheck(Base):
    """One expectation of a run: ``pending`` until ``passed``, ``failed`` or ``skipped``, with evidence (JSON)."""

    __tablename__ = "certification_checks"
    __table_args__ = (UniqueConstraint("run_id", "key", name="uq_certification_checks_run_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("certification_runs.id"), index=True)
    key: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(300))
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(10), default="pending")
    evidence: Mapped[str] = mapped_column(Text, default="{}")
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CertificationFault(Base):
    """A SOAP fault the agency under test provoked while its run was active."""

    __tablename__ = "certification_faults"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("certification_runs.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    operation: Mapped[str] = mapped_column(String(60))
    code: Mapped[str] = mapped_column(String(60))
    message: Mapped[str] = mapped_column(Text)
