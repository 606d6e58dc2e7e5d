"""What the exchange service hands back to its callers (the SOAP layer, the CLI, the dashboard)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path


@dataclass(frozen=True)
class Caller:
    """An authenticated agency.

    ``saw_waiting`` is what authentication saw in the same statement: whether any item was
    available for this agency to poll (None where nobody looked). It describes one moment, so only
    the request that authenticated may act on it (:meth:`ExchangeService.pending` ``fresh_caller``).
    ``agencies_changed`` is the directory's change counter read in that statement too (None where
    nobody read it): the request's sends may use addressees read under that value
    (gateway/exchange/addressees.py).
    """

    agency_id: int
    code: str
    name: str
    require_signature: bool = False
    saw_waiting: bool | None = field(default=None, compare=False)
    agencies_changed: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SendReceipt:
    """A stored document: the gateway's id for it and the agencies it was queued for."""

    document_id: str
    edxml_document_id: str
    recipients: tuple[str, ...]
    duplicate: bool
    signer: str | None = None


@dataclass(frozen=True)
class PendingItem:
    """One item waiting for an agency: a document addressed to it, or a status about one."""

    item_id: str
    kind: str
    document_id: str
    edxml_document_id: str
    sender_code: str
    sender_name: str
    code: str
    subject: str
    promulgation_date: date
    due_date: date | None
    priority: int | None
    business_type: int
    status_code: str | None
    status_from: str | None
    size: int
    queued_at: datetime
    lease_expires_at: datetime
    attempts: int
    signer: str | None = None


@dataclass(frozen=True)
class FetchedItem:
    """An item's edXML file, located in the blob store (streamed to the client, never loaded)."""

    item_id: str
    kind: str
    document_id: str
    sha256: str
    size: int
    path: Path


@dataclass(frozen=True)
class StatusReceipt:
    """A recorded status and the agencies whose queues now hold its status message."""

    document_id: str
    agency_code: str
    status_code: str
    reported_at: datetime
    notified: tuple[str, ...]


@dataclass(frozen=True)
class StatusEntry:
    """One line of a document's status history."""

    document_id: str
    recipient_code: str
    recipient_name: str
    status_code: str
    status_name: str
    description: str | None
    staff_department: str | None
    staff_name: str | None
    reporter_code: str
    reported_at: datetime


@dataclass(frozen=True)
class AgencyView:
    """A directory entry as agencies see it; ``home_instance`` is the gateway that serves the agency."""

    code: str
    name: str
    level: int
    parent_code: str | None
    active: bool
    home_instance: str
